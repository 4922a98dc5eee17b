"""The provider catalog: prices, capabilities, lookups, simulator URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from symphony.catalog import CAPABILITIES, CATALOG_FILE, Catalog, load_catalog

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
