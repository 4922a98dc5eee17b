"""A proxy process's breakers in Redis, as the console reads them: on one server and on a cluster.

A real ``Health`` is walked through an ejection (open), the end of its cooldown (half-open) and a
trial that succeeds (closed); after each step the published hash, read back with the console's
reader (``symphony.breakers``), must say so. The periodic task publishes by itself, with a TTL,
and a replica that stops publishing drops out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
import redis

from proxy.breaker_states import BreakerStates
from proxy.routing.health import Health, Rules
from symphony import breakers
from symphony.keys import BREAKER_REPLICAS, breakers_key
from symphony.redis_client import async_redis, sync_redis
from symphony.redis_cluster import LocalCluster
from symphony.redis_server import RedisServer

RULES = Rules(
    window_s=10.0,
    failures=2,
    failure_rate=0.5,
    timeouts=2,
    cooldown_s=0.4,
    max_ejected_share=0.5,
    panic_share=0.3,
)
POOL = [("grok", "grok/grok-3-mini"), ("openai", "openai/gpt-4o"), ("venice", "venice/llama")]
PROVIDERS = ["grok", "openai", "venice", "deepseek"]


def shown(client: redis.Redis) -> dict[str, dict[str, object]]:
    return breakers.aggregate(breakers.read(client), PROVIDERS)


def test_an_ejection_is_published_open_then_half_open_then_closed(
    any_redis: RedisServer | LocalCluster,
) -> None:
    reader = sync_redis(any_redis.url)
    health = Health(RULES, POOL)

    async def walk() -> None:
        client = async_redis(any_redis.url)
        states = BreakerStates(client, health, "replica-a")
        try:
            await states.publish()
            first = shown(reader)
            assert [first[p]["state"] for p in PROVIDERS] == ["closed", "closed", "closed", "unknown"]
            assert first["grok"]["replicas"] == 1 and first["deepseek"]["replicas"] == 0

            now = time.monotonic()
            health.record("grok", "grok/grok-3-mini", "failure", now)
            health.record("grok", "grok/grok-3-mini", "failure", now)
            await states.publish()
            ejected = shown(reader)["grok"]
            assert ejected["state"] == "open" and ejected["open"] == 1
            assert ejected["reasons"] == ["grok is ejected for 0.4 s: 2 of 2 attempts failed in 10 s"]

            await asyncio.sleep(0.5)  # the cooldown ends: the next attempt is the trial
            await states.publish()
            assert shown(reader)["grok"]["state"] == "half-open"
            assert health.begin("grok", "grok/grok-3-mini", time.monotonic())
            await states.publish()
            assert shown(reader)["grok"]["state"] == "half-open"  # the trial in flight
            health.record("grok", "grok/grok-3-mini", "ok", time.monotonic())
            await states.publish()
            assert shown(reader)["grok"]["state"] == "closed"

            ttl_ms = reader.pttl(breakers_key("replica-a"))
            assert 0 < ttl_ms <= breakers.TTL_S * 1000
        finally:
            await client.aclose()

    asyncio.run(walk())
    reader.close()


def test_replicas_add_up_and_one_that_stops_drops_out(redis_server: RedisServer) -> None:
    reader = sync_redis(redis_server.url)
    broken, fine = Health(RULES, POOL), Health(RULES, POOL)
    now = time.monotonic()
    broken.record("venice", "venice/llama", "failure", now)
    broken.record("venice", "venice/llama", "failure", now)

    async def run() -> None:
        client = async_redis(redis_server.url)
        a = BreakerStates(client, broken, "replica-a", interval_s=0.05)
        b = BreakerStates(client, fine, "replica-b", interval_s=0.05)
        a.start()
        b.start()
        try:
            await asyncio.sleep(0.3)  # the tasks publish by themselves
            venice = shown(reader)["venice"]
            assert (venice["state"], venice["replicas"], venice["open"], venice["closed"]) == (
                "open",
                2,
                1,
                1,
            )
        finally:
            await a.close()
            await b.close()
        # replica-a stops: once it is not heard from for TTL_S it no longer counts (its hash expired too).
        stale = int(time.time() * 1000) - int(breakers.TTL_S * 1000) - 1
        reader.zadd(BREAKER_REPLICAS, {"replica-a": stale})
        reader.delete(breakers_key("replica-a"))
        venice = shown(reader)["venice"]
        assert (venice["state"], venice["replicas"]) == ("closed", 1)
        await b.publish()  # a publication prunes the replicas not heard from
        assert reader.zrange(BREAKER_REPLICAS, 0, -1) == [b"replica-b"]
        await client.aclose()

    asyncio.run(run())
    raw = reader.hgetall(breakers_key("replica-b"))
    assert json.loads(raw[b"venice"]) == {"state": "closed", "reason": ""}
    reader.close()


def test_redis_away_is_logged_once_and_the_task_lives_on(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        client = async_redis("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)  # nothing answers there
        states = BreakerStates(client, Health(RULES, POOL), "replica-a", interval_s=0.05)
        states.start()
        await asyncio.sleep(0.5)
        task = states._task._task
        assert task is not None and not task.done()  # still publishing (trying to)
        await states.close()
        await client.aclose()

    with caplog.at_level(logging.WARNING, logger="proxy.breaker_states"):
        asyncio.run(run())
    assert len([r for r in caplog.records if "cannot publish the breakers" in r.getMessage()]) == 1
