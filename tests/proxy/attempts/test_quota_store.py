"""Reservations and settlements across a Redis outage: each reaches the buckets exactly once.

These drive the proxy's quota gate (``proxy.attempts.quota_gate``) over a real Redis that is
stopped and started again (``persistent_redis`` keeps its data, as a production one
does), through a client made as the proxy makes it (``from_url``, no retries); the race test reaches
Redis through a relay that, like a NAT, lets a connection pooled before the outage look healthy
until it is used after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

import pytest
import redis
import redis.asyncio as aioredis

from proxy.attempts import quota_gate
from proxy.attempts.quota_gate import Grant, QuotaGuard
from symphony.clock import RealClock
from symphony.quotas import bucket_values, load_quota_policy
from symphony.redis_server import RedisServer
from tests.tcp_relay import TcpRelay, received

PROVIDER, MODEL = "openai", "gpt-4o-mini"
ESTIMATE, ACTUAL = 100, 130  # every settlement adds 30 tokens to its reservation's buckets
KEPT = 200  # settlements that fail during the outage and wait for Redis: A still replays when B reserves


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


class QuietRelay(TcpRelay):
    """Forwards Redis connections the way a stateless middlebox (a NAT, a TCP load balancer) does: when
    Redis closes a connection (a restart), the client's end stays open and looks idle and healthy; it
    is closed only when the client next sends on it. So a connection pooled before an outage is handed
    out after it, and fails in use: redis-py 8.2 replaces one whose socket has ended at checkout, which
    a direct connection's has, so the relay is what keeps this race reachable."""

    def forward(self, client: socket.socket, server: socket.socket) -> None:
        gone = threading.Event()
        threading.Thread(target=self._requests, args=(client, server, gone), daemon=True).start()
        threading.Thread(target=self._replies, args=(server, client, gone), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, gone: threading.Event) -> None:
        with contextlib.suppress(OSError):  # either end gone: the connection is over
            while (data := received(client)) and not gone.is_set():
                server.sendall(data)
            client.shutdown(socket.SHUT_RDWR)  # the client learns now, not when Redis went away
        client.close()
        server.close()

    def _replies(self, server: socket.socket, client: socket.socket, gone: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := received(server):
                client.sendall(data)
        gone.set()  # and the client's end stays open


async def remote_grant(guard: QuotaGuard) -> Grant:
    grant = await guard.reserve(PROVIDER, MODEL, ESTIMATE)
    assert isinstance(grant, Grant) and not grant.local
    return grant


def test_a_failure_while_kept_settlements_replay_loses_none_and_replays_none_twice(
    persistent_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
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
        guard, client = new_guard(relay.url)
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
        await guard.settle(late, ACTUAL)  # C: on the connection pooled before the outage, so it fails
        assert guard.degraded and not a.done()  # Redis failed while A was replaying
        b = await remote_grant(guard)
        after_a = await a
        after = await remote_grant(guard)  # the next request replays what C kept
        for grant in (after_a, b, after):
            await guard.settle(grant, ACTUAL)
        assert not guard.degraded
        await client.aclose()
        return (KEPT + 1 + 3) * ACTUAL

    relay = QuietRelay(persistent_redis.port)
    try:
        expected = asyncio.run(scenario())
    finally:
        relay.close()
    assert tokens_in_redis(persistent_redis.url) == expected
    # Each kept settlement (the 40, then C's) replayed once and the lost reservation cancelled once, over
    # every drain: two drains at once would each count what both applied.
    drains = [r.args for r in caplog.records if r.getMessage().startswith("quota store reachable again")]
    assert [sum(d[0] for d in drains), sum(d[1] for d in drains)] == [KEPT + 1, 1]  # (replayed, cancelled)


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
