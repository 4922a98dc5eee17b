"""`symphony keys create`: a key's models are checked against the catalog when it is made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from cli.main import main
from symphony.app_keys import list_keys
from symphony.redis_server import RedisServer

# The catalog file's arms, read independently of the code under test.
CATALOG = json.loads((Path(__file__).parents[2] / "policies" / "catalog.v1.json").read_text())
ARMS = [f"{name}/{model}" for name, spec in CATALOG["providers"].items() for model in spec["models"]]


@pytest.fixture
def redis_env(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)


def create(*models: str) -> int:
    return main(["keys", "create", "--app", "billing", "--json", "--models", *models])


@pytest.mark.usefixtures("redis_env")
def test_an_unknown_model_is_refused_naming_the_known_ones(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert create("gpt-4o-mini", "gpt-5-nonexistent") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "unknown model 'gpt-5-nonexistent'" in err
    assert all(arm in err for arm in ARMS)
    assert list_keys(redis_client) == []  # nothing stored


@pytest.mark.usefixtures("redis_env")
def test_a_near_miss_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert create("openai/gpt-4o-mimi") == 1
    assert "did you mean openai/gpt-4o-mini" in capsys.readouterr().err


@pytest.mark.usefixtures("redis_env")
def test_a_model_is_named_alone_or_with_its_provider(
    redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = ARMS[0].split("/")[1]
    assert create(bare, ARMS[-1]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["models"] == f"{bare},{ARMS[-1]}"
    assert [record.models for record in list_keys(redis_client)] == [(bare, ARMS[-1])]
