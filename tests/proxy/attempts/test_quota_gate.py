"""The proxy's quota gate across a Redis outage: answers under its rule, recovers, stays consistent."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis
import redis.asyncio as aioredis

from proxy.attempts import quota_gate
from proxy.attempts.quota_gate import Grant, QuotaGuard, Unavailable
from symphony.clock import RealClock
from symphony.quotas import Refusal, bucket_values, load_quota_policy
from symphony.redis_server import RedisServer


def token_total(client: redis.Redis, provider: str, window: str) -> int:
    return sum(bucket_values(client.hgetall(f"quota:{{{provider}}}:tokens:{window}")).values())


def new_guard(url: str, mode: str) -> tuple[QuotaGuard, aioredis.Redis]:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    guard = QuotaGuard(client, load_quota_policy(), RealClock(), fail_mode=mode, local_share=0.5)  # type: ignore[arg-type]
    return guard, client


def test_fail_open_serves_locally_then_settles_in_redis_once_it_returns(
    persistent_redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(quota_gate, "RETRY_REDIS_AFTER_S", 0.05)
    caplog.set_level(logging.WARNING, logger="proxy.attempts.quota_gate")

    async def scenario() -> list[Grant]:
        guard, client = new_guard(persistent_redis.url, "open")
        before = await guard.reserve("openai", "gpt-4o-mini", 100)
        assert isinstance(before, Grant) and not before.local
        persistent_redis.stop()
        during = [await guard.reserve("openai", "gpt-4o-mini", 100) for _ in range(20)]
        assert all(isinstance(g, Grant) and g.local for g in during)
        await guard.settle(before, 70)  # fails now: kept for later
        assert guard.degraded
        await asyncio.to_thread(persistent_redis.start)
        await asyncio.sleep(0.1)
        after = await guard.reserve("openai", "gpt-4o-mini", 100)
        assert isinstance(after, Grant) and not after.local and not guard.degraded
        await guard.settle(after, 40)
        await client.aclose()
        return [before, after]

    asyncio.run(scenario())
    # Only the Redis reservations are in Redis, each holding what was really used.
    assert token_total(redis.Redis.from_url(persistent_redis.url), "openai", "minute") == 70 + 40
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("quota store unreachable" in w for w in warnings) == 1  # once per interval, not per request
    assert any("reachable again" in w and "1 settlements replayed" in w for w in warnings)


def test_local_limiter_holds_its_share_of_the_cap(persistent_redis: RedisServer) -> None:
    async def scenario() -> tuple[int, object]:
        guard, client = new_guard(persistent_redis.url, "open")
        persistent_redis.stop()
        cap = load_quota_policy().providers["venice"].caps["requests"]["minute"]
        outcomes = [await guard.reserve("venice", "llama-3.3-70b", 1) for _ in range(cap)]
        await client.aclose()
        return cap, outcomes

    cap, outcomes = asyncio.run(scenario())
    granted = [o for o in outcomes if isinstance(o, Grant)]  # type: ignore[attr-defined]
    assert len(granted) == cap // 2  # share 0.5
    assert isinstance(outcomes[-1], Refusal)  # type: ignore[index]


def test_fail_closed_refuses_until_redis_is_back(
    persistent_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quota_gate, "RETRY_REDIS_AFTER_S", 0.05)

    async def scenario() -> None:
        guard, client = new_guard(persistent_redis.url, "closed")
        persistent_redis.stop()
        assert isinstance(await guard.reserve("grok", "grok-3-mini", 10), Unavailable)
        await asyncio.to_thread(persistent_redis.start)
        await asyncio.sleep(0.1)
        outcome = await guard.reserve("grok", "grok-3-mini", 10)
        assert isinstance(outcome, Grant) and not outcome.local
        await client.aclose()

    asyncio.run(scenario())


def test_a_redis_that_answers_but_takes_no_writes_stays_an_outage_until_it_takes_them(
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full Redis (maxmemory under noeviction) answers PING and refuses every write: the gate must
    not call it back after each probe only to find it refusing again, nor say it is back."""
    monkeypatch.setattr(quota_gate, "RETRY_REDIS_AFTER_S", 0.05)
    monkeypatch.setattr(quota_gate, "RECOVERY_PROBE_S", 0.01)
    caplog.set_level(logging.WARNING, logger="proxy.attempts.quota_gate")
    admin = redis.Redis.from_url(redis_server.url)

    async def scenario() -> None:
        guard, client = new_guard(redis_server.url, "open")
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
        seen_recovered = False
        for _ in range(30):  # 1.5 s: about 30 of the gate's retries and as many probes
            outcome = await guard.reserve("openai", "gpt-4o-mini", 100)
            assert isinstance(outcome, Grant) and outcome.local
            await asyncio.sleep(0.05)
            seen_recovered |= not guard.degraded
        assert not seen_recovered
        admin.config_set("maxmemory", 0)
        await asyncio.sleep(0.2)  # the probe's pause, at most RETRY_REDIS_AFTER_S
        assert not guard.degraded
        outcome = await guard.reserve("openai", "gpt-4o-mini", 100)
        assert isinstance(outcome, Grant) and not outcome.local
        await client.aclose()

    asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("reachable again" in w for w in warnings) == 1, warnings


def test_a_refusal_from_a_redis_that_takes_no_writes_does_not_end_the_outage(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reservation over its cap is refused before anything is written, so Redis answers it while it
    refuses writes: that answer is no sign Redis is back."""
    monkeypatch.setattr(quota_gate, "RETRY_REDIS_AFTER_S", 0.05)
    admin = redis.Redis.from_url(redis_server.url)
    cap = load_quota_policy().providers["venice"].caps["requests"]["minute"]

    async def scenario() -> None:
        guard, client = new_guard(redis_server.url, "open")
        for _ in range(cap):
            assert isinstance(await guard.reserve("venice", "llama-3.3-70b", 1), Grant)
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
        try:
            lost = await guard.reserve("openai", "gpt-4o-mini", 100)
            assert isinstance(lost, Grant) and lost.local and guard.degraded
            await asyncio.sleep(0.1)  # past RETRY_REDIS_AFTER_S: the next reservation goes to Redis
            refused = await guard.reserve("venice", "llama-3.3-70b", 1)
            assert isinstance(refused, Refusal)
            assert guard.degraded
        finally:
            admin.config_set("maxmemory", 0)
        await client.aclose()

    asyncio.run(scenario())
