"""`symphony models`: what the catalog holds, whether the proxy serves it, and why not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.main import main

BUNDLED = Path(__file__).parents[2] / "policies" / "catalog.v1.json"
CHAMPION = json.loads((Path(__file__).parents[2] / "policies" / "champion.json").read_text())


def own_catalog(tmp_path: Path) -> Path:
    """The bundled catalog plus a keyless Ollama and a relay that needs RELAY_API_KEY."""
    data: dict[str, Any] = json.loads(BUNDLED.read_text())
    data["providers"]["ollama"] = {
        "base_url": "http://127.0.0.1:11434/v1",
        "key_env": "",
        "wire": "openai",
        "models": {"llama3.1:8b": {"input_per_mtok": 0, "output_per_mtok": 0, "capabilities": ["tools"]}},
    }
    data["providers"]["relay"] = {
        "base_url": "https://relay.example/v1",
        "key_env": "RELAY_API_KEY",
        "wire": "openai",
        "models": {"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10, "capabilities": ["json_schema"]}},
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    return path


def rows(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, dict[str, Any]]:
    assert main(["models", "--json", *args]) == 0
    return {row["model"]: row for row in json.loads(capsys.readouterr().out)}


def test_what_is_served_and_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CATALOG_FILE", str(own_catalog(tmp_path)))
    monkeypatch.setenv("SIMULATED_PROVIDERS", "openai")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek")
    listed = rows(capsys)
    bundled = json.loads(BUNDLED.read_text())["providers"]
    expected_arms = [f"{p}/{m}" for p, spec in bundled.items() for m in spec["models"]]
    assert list(listed) == [*expected_arms, "ollama/llama3.1:8b", "relay/gpt-4o"]
    assert listed["openai/gpt-4o"]["served"] and "simulator" in listed["openai/gpt-4o"]["why"]
    assert listed["deepseek/deepseek-chat"]["served"]
    assert listed["deepseek/deepseek-chat"]["why"] == "key from DEEPSEEK_API_KEY"
    assert listed["ollama/llama3.1:8b"]["served"]
    assert listed["ollama/llama3.1:8b"]["why"].startswith("no key needed")
    assert not listed["relay/gpt-4o"]["served"]
    assert listed["relay/gpt-4o"]["why"] == "no key: set RELAY_API_KEY or RELAY_API_KEY_FILE"
    assert listed["relay/gpt-4o"]["input_per_mtok"] == 2.5
    assert not listed["anthropic/claude-sonnet-4-5"]["served"]
    # The champion's tasks that give an arm a utility above 0, read from the file itself.
    tasks = [task for task, table in CHAMPION["tasks"].items() if table.get("openai/gpt-4o", 0) > 0]
    assert listed["openai/gpt-4o"]["champion_tasks"] == tasks
    assert listed["ollama/llama3.1:8b"]["champion_tasks"] == []


def test_needs_names_the_missing_capability(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CATALOG_FILE", str(own_catalog(tmp_path)))
    monkeypatch.setenv("SIMULATED_PROVIDERS", "all")
    listed = rows(capsys, "--needs", "tools,logprobs")
    assert listed["openai/gpt-4o"]["served"]  # it has both
    assert not listed["ollama/llama3.1:8b"]["served"]
    assert listed["ollama/llama3.1:8b"]["why"] == "lacks logprobs"
    assert listed["perplexity/sonar"]["why"] == "lacks logprobs, tools"
    assert not listed["relay/gpt-4o"]["served"]  # no key says more than a capability
    assert listed["relay/gpt-4o"]["why"].startswith("no key")


def test_a_bad_catalog_or_capability_is_an_error_that_says_what(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = own_catalog(tmp_path)
    data = json.loads(path.read_text())
    data["providers"]["relay"]["base_url"] = "relay.example"
    path.write_text(json.dumps(data))
    monkeypatch.setenv("CATALOG_FILE", str(path))
    assert main(["models"]) == 1
    assert "providers.relay.base_url" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["models", "--needs", "telepathy"])
    assert usage.value.code == 2
    assert "unknown capabilities ['telepathy']" in capsys.readouterr().err


def test_without_simulated_providers_a_row_says_just_up_simulates(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SIMULATED_PROVIDERS", raising=False)
    assert main(["models", "--json"]) == 1  # a proxy started alone serves nothing without keys
    listed = {row["model"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["openai/gpt-4o"]["why"] == (
        "no key: set OPENAI_API_KEY or OPENAI_API_KEY_FILE (`just up` has the simulator stand in)"
    )


def test_the_table_for_people(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SIMULATED_PROVIDERS", "none")
    assert main(["models"]) == 1  # nothing is served: no key, no simulator
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == [
        "model",
        "served",
        "why",
        "wire",
        "input_per_mtok",
        "output_per_mtok",
        "capabilities",
        "champion_tasks",
    ]
    assert "no key: set OPENAI_API_KEY or OPENAI_API_KEY_FILE" in out
    assert "catalog.v1.json" in err
