"""App keys: issued once, stored only as a hash, revocable; budgets and limits as quota windows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis

from symphony.app_keys import AppKey, create_key, list_keys, load_key, matches, revoke_key, split_key
from symphony.quotas import QuotaStore, Refusal, Reservation
from symphony.redis_server import RedisServer

T0 = 1_767_225_600_000


def every_value(client: redis.Redis) -> bytes:
    """Every key and value in Redis, as one blob to search for leaks."""
    blob = b""
    for key in client.scan_iter():
        kind = client.type(key)
        blob += key
        if kind == b"hash":
            blob += b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"set":
            blob += b"".join(client.smembers(key))
        elif kind == b"string":
            blob += client.get(key) or b""
    return blob


def test_key_is_shown_once_and_stored_only_as_its_hash(redis_client: redis.Redis) -> None:
    key, record = create_key(redis_client, AppKey(prefix="", app="billing", created_ms=T0, rpm=60))
    prefix, whole = split_key(key) or ("", "")
    assert prefix == record.prefix and whole == key
    assert key.encode() not in every_value(redis_client)
    assert key.split("-")[-1].encode() not in every_value(redis_client)
    stored = load_key(redis_client, prefix)
    assert stored is not None and stored.app == "billing" and stored.rpm == 60
    assert matches(stored, key) and not matches(stored, key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert [r.prefix for r in list_keys(redis_client)] == [prefix]


def test_malformed_keys_are_not_keys() -> None:
    for presented in (
        "",
        "sk-sym-",
        "sk-sym-abc-def",
        "Bearer sk-sym-abcdefgh-" + "x" * 43,
        "sk-other-abcdefgh-" + "x" * 43,
    ):
        assert split_key(presented) is None


def test_revoked_key_is_marked_with_the_time(redis_client: redis.Redis) -> None:
    _, record = create_key(redis_client, AppKey(prefix="", app="ops", created_ms=T0))
    revoked = revoke_key(redis_client, record.prefix, T0 + 5)
    assert revoked.revoked_ms == T0 + 5
    assert load_key(redis_client, record.prefix).revoked_ms == T0 + 5  # type: ignore[union-attr]


def test_model_allow_list() -> None:
    record = AppKey(prefix="p", app="a", created_ms=0, models=("gpt-4o-mini", "anthropic/claude-sonnet-4-5"))
    assert record.allows("openai", "gpt-4o-mini")
    assert record.allows("anthropic", "claude-sonnet-4-5")
    assert not record.allows("openai", "gpt-4o")
    assert AppKey(prefix="p", app="a", created_ms=0).allows("grok", "anything")


def test_daily_budget_holds_within_one_request(redis_client: redis.Redis) -> None:
    record = AppKey(prefix="p", app="research", created_ms=0, budget_usd_day=0.01, budget_usd_month=1.0)
    store = QuotaStore(redis_client)
    spent = 0
    estimate = 1_500  # micro-dollars reserved per request
    for i in range(40):
        outcome = store.reserve(
            record.limits(), T0 + i, provider=record.scope, model="", tokens=0, cost_micros=estimate
        )
        if isinstance(outcome, Refusal):
            assert outcome.limit.metric == "usd_micros" and outcome.limit.window.name == "1d"
            assert outcome.retry_after_ms == 86_400_000 - i  # the next UTC day
            break
        assert isinstance(outcome, Reservation)
        actual = 1_000 + (i % 3) * 500  # 1,000 to 2,000 micro-dollars
        store.settle(outcome, 0, actual)
        spent += actual
    assert 10_000 - 2_000 <= spent <= 10_000 + 2_000  # never past the budget by more than one request


def test_cli_create_list_revoke(redis_server: RedisServer) -> None:
    env = {**os.environ, "REDIS_URL": redis_server.url}

    def symphony(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=60
        )

    created = symphony(
        "keys", "create", "--app", "web", "--budget-usd-month", "25", "--tpm", "90000", "--json"
    )
    assert created.returncode == 0, created.stderr
    made = json.loads(created.stdout)
    assert split_key(made["key"]) is not None
    listed = symphony("keys", "list", "--json")
    assert made["key"] not in listed.stdout and "sha256" not in listed.stdout
    assert json.loads(listed.stdout)[0]["budget_usd_month"] == 25.0
    assert symphony("keys", "revoke", made["prefix"]).returncode == 0
    missing = symphony("keys", "revoke", "zzzzzzzz")
    assert missing.returncode == 1 and "no app key with prefix 'zzzzzzzz'" in missing.stderr
    bad = symphony("keys", "create", "--app", "no spaces allowed")
    assert bad.returncode == 1 and "app name" in bad.stderr
