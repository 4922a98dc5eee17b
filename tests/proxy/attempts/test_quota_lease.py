"""Quota leases over a real Redis: what Redis holds once a lease is settled is what its grants used,
they cost a fraction of the script calls, and near a cap requests reserve one by one, exactly."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis
import redis.asyncio as aioredis

from proxy.attempts import quota_gate, quota_lease
from proxy.attempts.quota_gate import Grant, QuotaGuard
from symphony.clock import RealClock
from symphony.quotas import QuotaPolicy, Refusal, bucket_values, load_quota_policy
from symphony.redis_server import RedisServer

PROVIDER, MODEL = "openai", "gpt-4o-mini"
ESTIMATE, ACTUAL = 100, 130
REQUESTS_PER_MINUTE = "openai requests per minute"


def totals(url: str, metric: str, window: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return sum(bucket_values(client.hgetall(f"quota:{{{PROVIDER}}}:{metric}:{window}")).values())
    finally:
        client.close()


def script_calls(url: str) -> int:
    """Script runs Redis has completed since its statistics were reset (not the first EVALSHA of a
    script Redis had not loaded yet, which fails with NOSCRIPT and counts as a failed call)."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
    finally:
        client.close()
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


def reset_stats(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.config_resetstat()
    finally:
        client.close()


def guard_on(url: str, lease_requests: int, policy: QuotaPolicy | None = None) -> QuotaGuard:
    client = aioredis.Redis.from_url(url)
    return QuotaGuard(
        client,
        policy or load_quota_policy(),
        RealClock(),
        fail_mode="closed",
        local_share=1.0,
        lease_requests=lease_requests,
    )


async def clear_of_a_bucket_boundary() -> None:
    """Wait out the end of a 10 s bucket: a lease ends at the minute window's next boundary, and a test
    that counts leases must not run across one."""
    into_bucket = RealClock().now_ms() % 10_000
    if into_bucket > 8_000:
        await asyncio.sleep((10_000 - into_bucket) / 1000 + 0.01)


async def serve(guard: QuotaGuard, requests: int) -> list[Grant]:
    grants = []
    for _ in range(requests):
        grant = await guard.reserve(PROVIDER, MODEL, ESTIMATE)
        assert isinstance(grant, Grant) and not grant.local
        grants.append(grant)
        await guard.settle(grant, ACTUAL)
    return grants


def test_leased_grants_reach_redis_as_used_with_a_fraction_of_the_script_calls(
    redis_server: RedisServer,
) -> None:
    requests = 60
    calls = {}
    for lease_requests in (0, 8):
        redis.Redis.from_url(redis_server.url).flushall()
        reset_stats(redis_server.url)

        async def scenario(lease_requests: int = lease_requests) -> None:
            guard = guard_on(redis_server.url, lease_requests)
            await serve(guard, requests)
            await guard.close()

        asyncio.run(scenario())
        calls[lease_requests] = script_calls(redis_server.url)
        assert totals(redis_server.url, "requests", "day") == requests
        assert totals(redis_server.url, "tokens", "day") == requests * ACTUAL
    assert calls[0] == 2 * requests  # a reservation and a settlement each
    # The first request reserves alone (its room opens the lease); then a lease and its settlement
    # per 8 requests, one more whenever a lease ended early (a bucket boundary, its 0.25 s).
    assert calls[8] <= 2 + 2 * (requests // 8 + 3)


def test_each_grant_sees_the_room_left_after_it_as_if_it_had_reserved_alone(
    redis_server: RedisServer,
) -> None:
    cap = load_quota_policy().providers[PROVIDER].caps["requests"]["minute"]

    async def scenario() -> list[Grant]:
        guard = guard_on(redis_server.url, 8)
        grants = await serve(guard, 30)
        await guard.close()
        return grants

    grants = asyncio.run(scenario())
    assert any(grant.lease is not None for grant in grants)
    assert [grant.remaining[REQUESTS_PER_MINUTE] for grant in grants] == [cap - n for n in range(1, 31)]


def test_an_idle_lease_is_settled_by_its_timer(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        guard = guard_on(redis_server.url, 8)
        await clear_of_a_bucket_boundary()
        await serve(guard, 3)  # one alone, two from a lease of 8
        assert totals(redis_server.url, "requests", "day") == 1 + 8
        await asyncio.sleep(quota_lease.LEASE_MAX_S + 0.2)
        assert totals(redis_server.url, "requests", "day") == 3

    asyncio.run(scenario())
    assert totals(redis_server.url, "tokens", "day") == 3 * ACTUAL


def test_near_a_cap_the_last_requests_reserve_alone_and_the_refusal_is_exact(
    redis_server: RedisServer,
) -> None:
    cap = 200
    policy = QuotaPolicy.model_validate(
        {"version": "test", "providers": {PROVIDER: {"caps": {"requests": {"minute": cap}}}}}
    )

    async def scenario() -> tuple[list[Grant], Grant | Refusal | object]:
        guard = guard_on(redis_server.url, 32, policy)
        grants = await serve(guard, cap)
        refused = await guard.reserve(PROVIDER, MODEL, ESTIMATE)
        await guard.close()
        return grants, refused

    grants, refused = asyncio.run(scenario())
    assert any(grant.lease is not None for grant in grants)
    assert grants[-1].lease is None  # 1/16 of the room left is less than two requests
    assert isinstance(refused, Refusal) and (refused.used, refused.cap) == (cap, cap)
    assert totals(redis_server.url, "requests", "minute") == cap


def test_a_lease_settled_while_redis_is_down_is_replayed_once_it_is_back(
    persistent_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quota_gate, "RETRY_REDIS_AFTER_S", 0.05)
    url = persistent_redis.url

    async def scenario() -> None:
        guard = guard_on(url, 8)
        await clear_of_a_bucket_boundary()
        await serve(guard, 3)  # one alone, two from a lease of 8, which is still open
        persistent_redis.stop()
        await guard.close()  # its settlement fails: kept
        assert guard.degraded and guard.backlog == 1
        await asyncio.to_thread(persistent_redis.start)
        for _ in range(100):  # the gate's probe finds Redis back and replays it
            if not guard.backlog:
                break
            await asyncio.sleep(0.05)
        assert not guard.degraded and not guard.backlog

    asyncio.run(scenario())
    assert totals(url, "requests", "day") == 3
    assert totals(url, "tokens", "day") == 3 * ACTUAL


def test_a_lease_settlement_that_fails_for_another_reason_is_logged_and_close_returns(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="proxy.attempts.quota_gate")

    async def scenario() -> None:
        guard = guard_on(redis_server.url, 8)
        await clear_of_a_bucket_boundary()
        await serve(guard, 3)  # the lease of 8 is still open
        # A window's hash made a string (a key damaged by hand): the settlement's HMGET gets WRONGTYPE,
        # a Redis answer, not an outage, so nothing is kept for replay.
        redis.Redis.from_url(redis_server.url).set(f"quota:{{{PROVIDER}}}:tokens:day", "damaged")
        await guard.close()
        assert not guard.degraded and not guard.backlog

    asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records] == ["settling a quota lease failed"]
    assert "WRONGTYPE" in str(caplog.records[0].exc_info[1])  # type: ignore[index]


def test_an_arm_without_caps_takes_no_lease(redis_server: RedisServer) -> None:
    policy = QuotaPolicy.model_validate({"version": "test", "providers": {}})  # openai has no caps here
    calls = {}
    for lease_requests in (0, 8):
        reset_stats(redis_server.url)

        async def scenario(lease_requests: int = lease_requests) -> list[Grant]:
            guard = guard_on(redis_server.url, lease_requests, policy)
            grants = await serve(guard, 20)
            await guard.close()
            return grants

        assert all(grant.lease is None for grant in asyncio.run(scenario()))
        calls[lease_requests] = script_calls(redis_server.url)
    assert calls[8] == calls[0]  # a lease of nothing would cost a script call a request and grant none
