"""Reservations and settlements across a Redis outage: each reaches the buckets exactly once.

These drive the proxy's quota gate (``proxy.attempts.quota_gate``) over a real Redis that is
stopped and started again (``persistent_redis`` keeps its data, as a production one
does), through a client made as the proxy makes it (``from_url``, no retries), so the
connections it pooled before the outage are really dead after it.
"""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from proxy.attempts import quota_gate
from proxy.attempts.quota_gate import Grant, QuotaGuard
from symphony.clock import RealClock
from symphony.quotas import bucket_values, load_quota_policy
from symphony.redis_server import RedisServer

PROVIDER, MODEL = "openai", "gpt-4o-mini"
ESTIMATE, ACTUAL = 100, 130  # every settlement adds 30 tokens to its reservation's buckets
KEPT = 40  # settlements that fail during the outage and wait for Redis


def tokens_in_redis(url: str) -> int:
    """The tokens the provider's rolling day window holds (every hour bucket)."""
    client = redis.Redis.from_url(url)
    try:
        return sum(bucket_values(client.hgetall(f"quota:{{{PROVIDER}}}:tokens:day")).values())
    finally:
        client.close()


def new_guard(url: str) -> tuple[QuotaGuard, aioredis.Redis]:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2.0)
    guard = QuotaGuard(client, load_quota_policy(), RealClock(), fail_mode="open", local_share=1.0)
    return guard, client


def pool_state(client: aioredis.Redis) -> str:
    """Each pooled connection: in use or not, connected, and whether its socket has ended (read by
    redis-py's private attributes, for a failure's message only)."""

    def state(connection: object, in_use: bool) -> str:
        stream = getattr(getattr(connection, "_parser", None), "_stream", None)
        ended = stream.at_eof() if stream is not None else None
        connected = getattr(connection, "is_connected", None)
        return f"{'in use' if in_use else 'idle'} connected={connected} ended={ended}"

    pool = client.connection_pool
    idle = [state(c, False) for c in getattr(pool, "_available_connections", [])]
    busy = [state(c, True) for c in getattr(pool, "_in_use_connections", [])]
    return "; ".join(idle + busy) or "empty"


async def remote_grant(guard: QuotaGuard) -> Grant:
    grant = await guard.reserve(PROVIDER, MODEL, ESTIMATE)
    assert isinstance(grant, Grant) and not grant.local
    return grant


def test_a_failure_while_kept_settlements_replay_loses_none_and_replays_none_twice(
    persistent_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race behind the outage test's missing tokens, step by step.

    Redis comes back; request A's reservation succeeds and A starts replaying the kept
    settlements. Meanwhile request C's settlement fails on a connection pooled before
    the outage (dead now), which marks Redis down again; request B's reservation then
    succeeds and B would start replaying the same queue while A is still at it.
    """
    monkeypatch.setattr(quota_gate, "RETRY_REDIS_AFTER_S", 0.0)  # B tries Redis at once, as after the pause
    monkeypatch.setattr(quota_gate, "RECOVERY_PROBE_S", 60.0)  # no background replay: only A and B

    async def scenario() -> int:
        guard, client = new_guard(persistent_redis.url)
        # Two pooled connections: the proxy's pool holds many; the bottom one sits idle. (Two commands
        # at once: two reservations at once would share one call, symphony.quotas.batches.)
        await asyncio.gather(client.ping(), client.ping())
        kept = [await remote_grant(guard) for _ in range(KEPT)]
        late = await remote_grant(guard)  # C's, settled once Redis is back
        persistent_redis.stop()
        for grant in kept:
            await guard.settle(grant, ACTUAL)  # fails: kept for replay
        lost = await guard.reserve(PROVIDER, MODEL, ESTIMATE)  # its outcome unknown: cancelled later
        assert isinstance(lost, Grant) and lost.local
        await guard.settle(lost, ACTUAL)
        assert guard.degraded
        await asyncio.to_thread(persistent_redis.start)

        a = asyncio.create_task(remote_grant(guard))
        async with asyncio.timeout(10):
            while guard.degraded:  # A's reservation is back and its replay has begun
                await asyncio.sleep(0)
        pooled = pool_state(client)
        await guard.settle(late, ACTUAL)  # C: on the connection pooled before the outage, so it fails
        # Redis failed while A was replaying. (Failed once in CI on 2026-12-04: C's settlement was answered.
        # Not reproduced in 28 runs of this test, under load too, nor in 3 of tests/proxy and tests/symphony
        # on two processes; the pool's state before C, in the message, is what to look at next time.)
        assert guard.degraded and not a.done(), f"pool before C's settlement: {pooled}"
        b = await remote_grant(guard)
        after_a = await a
        after = await remote_grant(guard)  # the next request replays what C kept
        for grant in (after_a, b, after):
            await guard.settle(grant, ACTUAL)
        assert not guard.degraded
        await client.aclose()
        return (KEPT + 1 + 3) * ACTUAL

    expected = asyncio.run(scenario())
    assert tokens_in_redis(persistent_redis.url) == expected


def test_settlements_kept_during_an_outage_reach_redis_without_further_traffic(
    persistent_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last requests of a burst settle while Redis is away; nothing follows them."""
    monkeypatch.setattr(quota_gate, "RECOVERY_PROBE_S", 0.05)

    async def scenario() -> None:
        guard, client = new_guard(persistent_redis.url)
        grants = [await remote_grant(guard) for _ in range(5)]
        persistent_redis.stop()
        for grant in grants:
            await guard.settle(grant, ACTUAL)
        assert guard.degraded
        await asyncio.to_thread(persistent_redis.start)
        async with asyncio.timeout(10):  # the guard's own probe: it retries within its backoff cap
            # Not degraded once the drain begins; the backlog is empty once the last settlement landed.
            while guard.degraded or guard.backlog:
                await asyncio.sleep(0.05)
        await client.aclose()

    asyncio.run(scenario())
    assert tokens_in_redis(persistent_redis.url) == 5 * ACTUAL
