"""Redis that answers but takes no writes is, to the quota store, Redis away; other errors stay errors.

Real servers make every error here: a replica (READONLY), a server at its maxmemory under
``noeviction`` (OOM), a key of the wrong type (WRONGTYPE, which is a bug, not an outage).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from symphony.quotas import AsyncQuotaStore, Reservation, ReservationLost, load_quota_policy
from symphony.quotas.store import WritesRefused
from symphony.redis_client import hot_path_redis, sync_redis
from symphony.redis_server import REDIS_ERRORS, RedisServer

T0 = 1_767_225_600_000
LIMITS = load_quota_policy().limits("openai", "gpt-4o")


async def _reserve(url: str) -> Reservation:
    client = hot_path_redis(url)
    try:
        made = await AsyncQuotaStore(client).reserve(LIMITS, T0, provider="openai", model="gpt-4o", tokens=10)
        assert isinstance(made, Reservation)
        return made
    finally:
        await client.aclose()


async def _refused(url: str, made: Reservation) -> tuple[BaseException | None, BaseException]:
    """What a reservation's ReservationLost was caused by, and what a settlement raised."""
    client = hot_path_redis(url)
    store = AsyncQuotaStore(client)
    try:
        with pytest.raises(ReservationLost) as lost:
            await store.reserve(LIMITS, T0, provider="openai", model="gpt-4o", tokens=10)
        with pytest.raises(WritesRefused) as settled:
            await store.settle(made, 20)
        return lost.value.__cause__, settled.value
    finally:
        await client.aclose()


def test_a_read_only_replica_is_redis_away(redis_server: RedisServer, tmp_path: Path) -> None:
    made = asyncio.run(_reserve(redis_server.url))
    replica = RedisServer(port=0, data_dir=tmp_path / "replica", persist=False).start()
    try:
        sync_redis(replica.url).replicaof("127.0.0.1", redis_server.port)
        cause, settled = asyncio.run(_refused(replica.url, made))
    finally:
        replica.stop()
    assert isinstance(cause, WritesRefused) and "READONLY" in str(cause)
    assert isinstance(settled, REDIS_ERRORS) and "READONLY" in str(settled)


def test_a_full_server_is_redis_away_and_nothing_is_written(redis_server: RedisServer) -> None:
    made = asyncio.run(_reserve(redis_server.url))
    client = sync_redis(redis_server.url)
    before = {key: client.hgetall(key) for key in client.scan_iter("quota:*")}
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        cause, settled = asyncio.run(_refused(redis_server.url, made))
        after = {key: client.hgetall(key) for key in client.scan_iter("quota:*")}
    finally:
        client.config_set("maxmemory", 0)
    assert isinstance(cause, WritesRefused) and "OOM" in str(cause)
    assert isinstance(settled, REDIS_ERRORS) and "OOM" in str(settled)
    assert after == before


def test_a_key_of_the_wrong_type_is_an_error_not_an_outage(redis_server: RedisServer) -> None:
    client = sync_redis(redis_server.url)
    client.set(LIMITS[0].key, "not a hash")

    async def reserve() -> None:
        hot = hot_path_redis(redis_server.url)
        try:
            await AsyncQuotaStore(hot).reserve(LIMITS, T0, provider="openai", model="gpt-4o", tokens=1)
        finally:
            await hot.aclose()

    with pytest.raises(redis.ResponseError, match="WRONGTYPE") as raised:
        asyncio.run(reserve())
    assert not isinstance(raised.value, REDIS_ERRORS)
