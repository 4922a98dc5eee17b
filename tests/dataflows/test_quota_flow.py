"""The quotas branch of the engine's dataflow: ETAs and reconciled caps from usage events."""

from __future__ import annotations

import redis

from symphony import engine_client
from symphony.events import Usage, new_id
from symphony.quotas import load_quota_policy
from symphony.stream import publish
from tests.engineutil import BASE_TS, SHARDS, Engine
from tests.waiting import wait_until


def usage(i: int, provider: str, headers: dict[str, str] | None = None) -> Usage:
    ts = BASE_TS + i * 100
    return Usage(
        event_id=new_id(ts),
        ts=ts,
        decision_id=new_id(ts),
        app="tests",
        provider=provider,
        model="m",
        attempt=1,
        status="ok",
        ttfb_ms=5.0,
        latency_ms=9.0,
        input_tokens=30,
        output_tokens=20,
        cost_usd=0.0,
        rate_limit=headers or {},
    )


def test_reported_lower_limit_becomes_a_runtime_cap_logged_in_order(
    engine: Engine, redis_client: redis.Redis
) -> None:
    policy_rpm = load_quota_policy().providers["openai"].caps["requests"]["minute"]
    reported = {"x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "119"}
    engine.start()
    publish(redis_client, [usage(i, "openai", reported) for i in range(50)], SHARDS)

    cap_key = "symphony:caps:{openai}:requests:minute"
    wait_until(lambda: redis_client.get(cap_key) is not None, 30.0, every_s=0.1)
    assert int(redis_client.get(cap_key) or 0) == 120
    assert redis_client.pttl(cap_key) > 0  # expires back to the policy

    log = engine.log.read_text()
    diff = log.index(
        f"policy_vs_observed=diff provider=openai window=minute metric=requests "
        f"policy={policy_rpm} observed=120"
    )
    adjust = log.index(
        f"runtime_cap_adjustment provider=openai window=minute metric=requests from={policy_rpm} to=120"
    )
    assert diff < adjust
    assert log.count("runtime_cap_adjustment") == 1  # not again for the same report


def test_etas_land_in_redis_and_snapshots_in_clickhouse(engine: Engine, redis_client: redis.Redis) -> None:
    engine.start()
    publish(redis_client, [usage(i, "anthropic") for i in range(300)], SHARDS)  # 30 s of event time

    eta_key = "symphony:eta:{anthropic}:tokens:minute"
    wait_until(lambda: redis_client.exists(eta_key), 30.0, every_s=0.1)
    wait_until(
        lambda: int(redis_client.hget(eta_key, "as_of_ms") or 0) >= BASE_TS + 25_000, 30.0, every_s=0.1
    )
    eta = {k.decode(): v.decode() for k, v in redis_client.hgetall(eta_key).items()}
    cap = load_quota_policy().providers["anthropic"].caps["tokens"]["minute"]
    assert int(eta["cap"]) == cap
    assert int(eta["used"]) + int(eta["remaining"]) == cap
    assert int(eta["used"]) % 50 == 0 and int(eta["used"]) > 0
    # A few thousand tokens a minute never fill an 800,000-token minute: no time to exhaustion
    assert float(eta["burn_per_min"]) > 0 and eta["exhaust_in_ms"] == ""
    assert 0 < int(eta["reset_in_ms"]) <= 60_000
    assert redis_client.exists("symphony:eta:{anthropic}:tokens:5h")  # the subscription window too

    rows = engine_client.wait_for_count(
        engine.url, "SELECT count() FROM quota_snapshots FINAL WHERE provider = 'anthropic'", 1
    )
    assert rows >= 1
