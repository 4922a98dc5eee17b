"""The provider catalog: prices, capabilities, lookups, simulator URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from symphony.catalog import CAPABILITIES, CATALOG_FILE, Catalog, CatalogError, load_catalog, read_catalog

CATALOG = load_catalog()


def test_every_model_declares_known_capabilities() -> None:
    for provider, spec in CATALOG.providers.items():
        for model, price in spec.models.items():
            assert price.capabilities, f"{provider}/{model} declares no capabilities"
            assert price.capabilities <= CAPABILITIES


@pytest.mark.parametrize(
    ("arm", "has", "lacks"),
    [
        ("openai/gpt-4o", {"tools", "vision", "json_object", "json_schema", "stop"}, set()),
        ("perplexity/sonar", {"json_schema"}, {"tools", "json_object"}),
        ("deepseek/deepseek-chat", {"tools", "json_object", "stop"}, {"vision", "json_schema"}),
        ("grok/grok-3-mini", {"tools", "json_schema"}, {"vision", "stop"}),
        ("anthropic/claude-sonnet-4-5", {"tools", "vision", "stop"}, {"multiple_choices", "logprobs"}),
        ("gemini/gemini-2.5-flash", {"tools", "vision", "json_schema"}, {"logprobs"}),
    ],
)
def test_capabilities_of_known_models(arm: str, has: set[str], lacks: set[str]) -> None:
    provider, model = arm.split("/")
    capabilities = CATALOG.arm(provider, model).capabilities
    assert has <= capabilities
    assert not lacks & capabilities


def test_unknown_capability_is_refused(tmp_path: Path) -> None:
    data = json.loads(CATALOG_FILE.read_text())
    data["providers"]["openai"]["models"]["gpt-4o"]["capabilities"] = ["tools", "telepathy"]
    with pytest.raises(ValidationError, match="capabilities"):
        Catalog.model_validate(data)


def test_capabilities_default_to_none_declared() -> None:
    data = json.loads(CATALOG_FILE.read_text())
    del data["providers"]["openai"]["models"]["gpt-4o"]["capabilities"]
    assert Catalog.model_validate(data).arm("openai", "gpt-4o").capabilities == frozenset()


def test_cost_usd() -> None:
    price = CATALOG.arm("openai", "gpt-4o")
    assert price.cost_usd(1_000_000, 0) == pytest.approx(2.50)
    assert price.cost_usd(1000, 2000) == pytest.approx((1000 * 2.50 + 2000 * 10.00) / 1e6)


def test_lookups() -> None:
    assert CATALOG.has("anthropic", "claude-sonnet-4-5")
    assert not CATALOG.has("anthropic", "gpt-4o")
    assert not CATALOG.has("nobody", "gpt-4o")
    assert CATALOG.find_model("gpt-4o") == ("openai", "gpt-4o")
    assert CATALOG.find_model("deepseek/deepseek-chat") == ("deepseek", "deepseek-chat")
    assert CATALOG.find_model("openai/deepseek-chat") is None
    assert CATALOG.find_model("no-such-model") is None


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("openai", "http://sim:1/openai/v1"),
        ("anthropic", "http://sim:1/anthropic/v1"),
        ("gemini", "http://sim:1/gemini/v1beta"),
        ("perplexity", "http://sim:1/perplexity"),
        ("venice", "http://sim:1/venice/api/v1"),
        ("grok", "http://sim:1/grok/v1"),
        ("deepseek", "http://sim:1/deepseek/v1"),
    ],
)
def test_simulated_base_url(provider: str, url: str) -> None:
    assert CATALOG.providers[provider].simulated_base_url("http://sim:1/", provider) == url


def _catalog_with(tmp_path: Path, change: dict[str, object]) -> Path:
    """The bundled catalog with ``change`` merged into its providers, written to a file."""
    data = json.loads(CATALOG_FILE.read_text())
    data["providers"].update(change)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    return path


OWN = {
    "base_url": "http://vllm:8000/v1",
    "key_env": "",
    "wire": "openai",
    "models": {"m": {"input_per_mtok": 0, "output_per_mtok": 0}},
}


@pytest.mark.parametrize(
    ("entry", "named", "why"),
    [
        ({**OWN, "base_url": "vllm:8000"}, "providers.vllm.base_url", "http:// or https://"),
        ({**OWN, "key_env": "vllm key"}, "providers.vllm.key_env", "environment variable name"),
        ({**OWN, "wire": "grpc"}, "providers.vllm.wire", "'openai', 'anthropic' or 'gemini'"),
        (
            {**OWN, "models": {"m": {"input_per_mtok": -1, "output_per_mtok": 0}}},
            "providers.vllm.models.m.input_per_mtok",
            "greater than or equal to 0",
        ),
        (
            {
                **OWN,
                "models": {"m": {"input_per_mtok": 1, "output_per_mtok": 1, "capabilities": ["telepathy"]}},
            },
            "providers.vllm.models.m.capabilities.0",
            "(given 'telepathy')",
        ),
        (
            {**OWN, "models": {"m": {"input_per_mtok": 1, "ouput_per_mtok": 1}}},
            "providers.vllm.models.m.ouput_per_mtok",
            "Extra inputs",
        ),
        ({**OWN, "models": {}}, "providers.vllm.models", "at least 1"),
        (
            {**OWN, "models": {"two words": {"input_per_mtok": 1, "output_per_mtok": 1}}},
            "providers.vllm.models",
            "without spaces",
        ),
        ({**OWN, "wire": "anthropic", "auth": "api-key"}, "providers.vllm", "openai wire only"),
    ],
)
def test_a_bad_entry_is_named(tmp_path: Path, entry: dict[str, object], named: str, why: str) -> None:
    with pytest.raises(CatalogError) as caught:
        read_catalog(_catalog_with(tmp_path, {"vllm": entry}))
    message = str(caught.value)
    assert f"  {named}: " in message
    assert why in message
    assert str(tmp_path / "catalog.json") in message


def test_a_bad_provider_name_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"providers: .*provider name 'My Relay'"):
        read_catalog(_catalog_with(tmp_path, {"My Relay": OWN}))


def test_every_bad_entry_is_named_at_once(tmp_path: Path) -> None:
    bad = {**OWN, "base_url": "nowhere", "key_env": "lower"}
    with pytest.raises(CatalogError, match="has 2 bad entries") as caught:
        read_catalog(_catalog_with(tmp_path, {"vllm": bad}))
    assert "providers.vllm.base_url" in str(caught.value)
    assert "providers.vllm.key_env" in str(caught.value)


def test_a_file_that_is_not_json_or_not_there(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text('{"version": ')
    with pytest.raises(CatalogError, match="not JSON"):
        read_catalog(path)
    with pytest.raises(CatalogError, match="cannot read it"):
        read_catalog(tmp_path / "missing.json")


def test_an_own_provider_is_read(tmp_path: Path) -> None:
    catalog = read_catalog(
        _catalog_with(
            tmp_path,
            {
                "vllm": {
                    **OWN,
                    "models": {"meta-llama/Llama-3.1-8B": {"input_per_mtok": 0, "output_per_mtok": 0}},
                }
            },
        )
    )
    spec = catalog.providers["vllm"]
    assert not spec.takes_key
    assert spec.auth == "bearer"
    # A model name holding a "/" is found plain and behind its provider.
    assert catalog.find_model("meta-llama/Llama-3.1-8B") == ("vllm", "meta-llama/Llama-3.1-8B")
    assert catalog.find_model("vllm/meta-llama/Llama-3.1-8B") == ("vllm", "meta-llama/Llama-3.1-8B")
    assert catalog.find_model("openai/meta-llama/Llama-3.1-8B") is None
