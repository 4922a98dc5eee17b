"""Redis Cluster: the URL, the one client factory, and every Redis use of the project on a real cluster of
3 masters with replicas (``redis_cluster`` in tests/conftest.py) — the stream's shards, the proxy's
asyncio quota store, app keys, the clock, trimming's offsets and the jobs' scripts.

A call that spans two hash slots fails on a cluster (CROSSSLOT) and nowhere else, so each test here
would fail if a key lost its hash tag or a pipeline command named keys of two slots.
"""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import Callable

import pydantic
import pytest
import redis
import redis.asyncio.cluster as aiocluster
import redis.cluster
import uvloop

from dataflows import trimming
from symphony.app_keys import AppKey, create_key, list_keys, load_key, revoke_key
from symphony.clock import SimulatedClock, publish_clock, shared_clock
from symphony.jobs import Job, JobStore, new_job_id
from symphony.quotas import (
    ROLLING,
    AsyncQuotaStore,
    Limit,
    Refusal,
    Reservation,
    ReservationLost,
    bucket_values,
)
from symphony.redis_client import async_redis, cluster_seeds, cluster_url, sync_redis
from symphony.redis_cluster import LocalCluster, slot_ranges
from symphony.redis_server import RedisServer, answers
from symphony.settings import Settings
from symphony.stream import EVENT_FIELD, publish, publish_async, stream_name
from tests.engineutil import events

T0 = 1_767_225_600_000


def test_a_cluster_url_names_its_seeds_credentials_and_tls() -> None:
    assert cluster_seeds("redis+cluster://10.0.0.1:7000,redis-b:7001") == (
        [("10.0.0.1", 7000), ("redis-b", 7001)],
        {"ssl": False},
    )
    assert cluster_seeds("rediss+cluster://ops:p%40ss@h:6380/0") == (
        [("h", 6380)],
        {"ssl": True, "username": "ops", "password": "p@ss"},
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://h:7000/2", "only database 0"),
        ("redis+cluster://h", "write host:port"),
        ("redis+cluster://h:0", "a port from 1 to 65535"),
        ("redis+cluster://h:70000", "a port from 1 to 65535"),
        ("redis+cluster://h:7000,:7001", "cluster seed ':7001'"),
        ("redis+cluster://h:7000?timeout=1", "takes no query"),
    ],
)
def test_a_bad_cluster_url_is_refused_saying_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cluster_seeds(url)
    with pytest.raises(pydantic.ValidationError, match=message):
        Settings(redis_url=url)


def test_one_factory_gives_a_cluster_client_only_for_a_cluster_url(
    redis_server: RedisServer, redis_cluster: LocalCluster
) -> None:
    assert Settings(redis_url=redis_cluster.url).redis_url == redis_cluster.url
    single, clustered = sync_redis(redis_server.url), sync_redis(redis_cluster.url)
    assert type(single) is redis.Redis and isinstance(clustered, redis.cluster.RedisCluster)
    assert isinstance(async_redis(redis_cluster.url), aiocluster.RedisCluster)
    assert clustered.ping() and single.ping()


def test_a_cluster_answers_and_one_that_is_not_there_does_not(redis_cluster: LocalCluster) -> None:
    assert answers(redis_cluster.url)
    with socket.socket() as held:  # bound, never listening: connections are refused
        held.bind(("127.0.0.1", 0))
        assert not answers(cluster_url([("127.0.0.1", held.getsockname()[1])]), timeout=0.3)


def test_the_local_cluster_is_three_masters_each_with_a_replica(
    redis_cluster: LocalCluster, cluster_client: redis.Redis
) -> None:
    roles = [node.process is not None and _role(node) for node in redis_cluster.nodes]
    assert roles.count("master") == 3 and roles.count("slave") == 3
    assert [len(r) for r in slot_ranges(3)] == [5461, 5461, 5462]


def _role(node: RedisServer) -> str:
    role: str = redis.Redis(port=node.port).info("replication")["role"]
    return role


@pytest.mark.parametrize("shards", [4, 8])
def test_stream_shards_spread_over_every_master_and_keep_a_decision_together(
    redis_cluster: LocalCluster, cluster_client: redis.Redis, shards: int
) -> None:
    batch = events(0, 150)  # 150 decisions, each with its usage event
    publish(cluster_client, batch[:150], shards)

    async def publish_rest() -> None:
        client = async_redis(redis_cluster.url)
        try:
            await publish_async(client, batch[150:], shards)
        finally:
            await client.aclose()

    asyncio.run(publish_rest())
    owners = {redis_cluster.master_of(stream_name(shard)).port for shard in range(shards)}
    assert len(owners) == 3  # every master holds a shard: the stream's load spreads over the cluster
    expected: dict[int, list[bytes]] = {shard: [] for shard in range(shards)}
    for event in batch:  # the published order, per shard: crc32 of the decision id modulo shards
        shard = zlib.crc32(str(event.decision_id).encode()) % shards
        expected[shard].append(event.model_dump_json().encode())
    for shard in range(shards):
        stored = [fields[EVENT_FIELD] for _, fields in cluster_client.xrange(stream_name(shard))]
        assert stored == expected[shard], shard


def test_the_proxys_async_quota_store_reserves_and_settles_on_a_cluster(
    redis_cluster: LocalCluster, cluster_client: redis.Redis
) -> None:
    """A provider's scope and an app's scope hash to different slots; each reservation stays in one."""
    provider_limits = [Limit("openai", "requests", ROLLING["minute"], 3)]
    app = AppKey(prefix="abcdefgh", app="team-a", created_ms=T0, rpm=2, tpm=100)
    assert cluster_client.cluster_keyslot(provider_limits[0].key) != cluster_client.cluster_keyslot(
        app.limits()[0].key
    )

    async def scenario() -> list[Reservation | Refusal]:
        client = async_redis(redis_cluster.url)
        store = AsyncQuotaStore(client)
        try:
            outcomes = []
            for i in range(4):
                for limits in (provider_limits, list(app.limits())):
                    outcome = await store.reserve(limits, T0 + i, provider="openai", model="m", tokens=30)
                    outcomes.append(outcome)
                    if isinstance(outcome, Reservation):
                        await store.settle(outcome, 20)
            return outcomes
        finally:
            await client.aclose()

    outcomes = asyncio.run(scenario())
    granted = [isinstance(o, Reservation) for o in outcomes]
    # provider: 3 requests a minute; app: 2 requests a minute (and 100 tokens, never reached)
    assert granted == [True, True, True, True, True, False, False, False]
    assert sum(bucket_values(cluster_client.hgetall(provider_limits[0].key)).values()) == 3
    requests, tokens = app.limits()[0], app.limits()[1]
    assert sum(bucket_values(cluster_client.hgetall(requests.key)).values()) == 2
    assert sum(bucket_values(cluster_client.hgetall(tokens.key)).values()) == 40  # two settled at 20


def test_app_keys_the_clock_and_trimming_offsets_on_a_cluster(cluster_client: redis.Redis) -> None:
    key, stored = create_key(cluster_client, AppKey(prefix="", app="team-b", created_ms=T0, rpm=5))
    assert load_key(cluster_client, stored.prefix) == stored and key.startswith(f"sk-sym-{stored.prefix}-")
    assert [k.prefix for k in list_keys(cluster_client)] == [stored.prefix]
    assert revoke_key(cluster_client, stored.prefix, T0 + 1).revoked_ms == T0 + 1

    published = publish_clock(cluster_client, start_ms=T0, speed=60.0)
    assert isinstance(published, SimulatedClock) and shared_clock(cluster_client) == published

    trimming.register(cluster_client, "engine-a")
    trimming.publish_offsets(cluster_client, "engine-a", {0: "5-0", 1: "7-0", 2: "9-0", 3: "1-0"}, 4)
    assert trimming.safe_offsets(cluster_client, 4) == {0: "5-0", 1: "7-0", 2: "9-0", 3: "1-0"}
    trimming.deregister(cluster_client, "engine-a", 4)  # deletes keys of several slots
    assert not any(cluster_client.exists(trimming.offset_key("engine-a", shard)) for shard in range(4))


def test_the_jobs_scripts_run_on_a_cluster(redis_cluster: LocalCluster, cluster_client: redis.Redis) -> None:
    async def scenario() -> tuple[list[str], str | None, list[str]]:
        client = async_redis(redis_cluster.url)
        store = JobStore(client)
        try:
            job = Job(
                id=new_job_id(T0),
                app="team-c",
                request={"model": "gpt-4o-mini"},
                deadline_ms=T0 + 60_000,
                tokens=50,
            )
            await store.create(job)
            waiting = [j.id for j in await store.waiting()]
            await store.heartbeat("dispatcher-1")  # only a live dispatcher may claim
            claimed = await store.claim(job.id, "dispatcher-1", "openai", T0)
            return waiting, claimed, await store.running()
        finally:
            await client.aclose()

    waiting, claimed, running = asyncio.run(scenario())
    assert len(waiting) == 1 and claimed is not None and running == waiting


def uvloop_write_on_closed_transport() -> RuntimeError:
    """The error uvloop itself raises for a write to a transport that was closed under the writer."""

    async def provoke() -> RuntimeError:
        server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            writer.transport.abort()
            await asyncio.sleep(0)  # uvloop closes the handle on the loop's next turn
            writer.writelines([b"PING\r\n"])
        except RuntimeError as exc:
            return exc
        finally:
            server.close()
        raise AssertionError("uvloop let a write to a closed transport through")

    return uvloop.run(provoke())


RACES: dict[str, Callable[[], Exception]] = {
    "writer gone": lambda: AttributeError("'NoneType' object has no attribute 'writelines'"),
    "uvloop transport closed": uvloop_write_on_closed_transport,
}


@pytest.mark.parametrize("race_name", list(RACES))
def test_a_failover_race_in_redis_py_reaches_callers_as_redis_away(
    redis_cluster: LocalCluster, cluster_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, race_name: str
) -> None:
    """redis-py 8.1's asyncio cluster client can write on a connection closed mid-send during a failover
    (seen in test_cluster_failover: a 500, and a batch of events dropped). Stood in here by redis-py's node
    methods raising what it then raises: the proxy's client turns it into ConnectionError, so a reservation
    becomes ReservationLost (QUOTA_FAIL_MODE decides) and the emitter's pipeline retries."""

    race = RACES[race_name]()

    async def closed_mid_send(*args: object, **kwargs: object) -> object:
        raise race

    async def scenario() -> list[str]:
        client = async_redis(redis_cluster.url)
        store = AsyncQuotaStore(client)
        limits = [Limit("openai", "requests", ROLLING["minute"], 3)]
        seen = []
        try:
            await client.ping()  # connected before the race
            monkeypatch.setattr(aiocluster.ClusterNode, "execute_command", closed_mid_send)
            monkeypatch.setattr(aiocluster.ClusterNode, "execute_pipeline", closed_mid_send)
            try:
                await store.reserve(limits, T0, provider="openai", model="m", tokens=1)
            except ReservationLost:
                seen.append("reservation lost")
            try:
                await publish_async(client, events(0, 2), 4)
            except redis.ConnectionError:
                seen.append("publish: connection error")
            return seen
        finally:
            monkeypatch.undo()
            await client.aclose()

    assert asyncio.run(scenario()) == ["reservation lost", "publish: connection error"]
