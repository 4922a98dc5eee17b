"""The multiplexed client answers as redis-py's own client does, on a real server, and copes with
concurrency, cancellation, a lost server and a stalled one.

The model is redis-py's standard asyncio client: the same commands through both must give the
same results and the same errors.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import uvloop
from redis.commands.core import AsyncScript

from symphony.redis_client import async_redis, hot_path_redis
from symphony.redis_mux import MultiplexedRedis
from symphony.redis_server import RedisServer
from symphony.stream import EVENT_FIELD, encode, publish_async, stream_name
from tests.engineutil import events

Scenario = Callable[[aioredis.Redis, str], Awaitable[list[Any]]]


async def commands(client: aioredis.Redis, prefix: str) -> list[Any]:
    """One of each kind of reply the project reads: strings, ints, maps, streams, scripts, errors."""
    out: list[Any] = []
    out.append(await client.set(f"{prefix}:s", "é"))
    out.append(await client.get(f"{prefix}:s"))
    out.append(await client.get(f"{prefix}:missing"))
    out.append(await client.incrby(f"{prefix}:n", 5))
    out.append(await client.hset(f"{prefix}:h", mapping={"a": 1, "b": "two"}))
    out.append(await client.hgetall(f"{prefix}:h"))
    out.append(await client.hmget(f"{prefix}:h", ["a", "zz"]))
    out.append(await client.expire(f"{prefix}:h", 100))
    out.append(await client.pttl(f"{prefix}:h") > 0)
    out.append(await client.exists(f"{prefix}:h", f"{prefix}:missing"))
    out.append(await client.zadd(f"{prefix}:z", {"x": 1.5, "y": 0.5}))
    out.append(await client.zrange(f"{prefix}:z", 0, -1, withscores=True))
    added = await client.xadd(f"{prefix}:x", {"event": "{}"})
    entries: Any = await client.xrange(f"{prefix}:x")
    out.append([fields for _, fields in entries])
    out.append(str(added).count("-"))
    script: AsyncScript = client.register_script("return {KEYS[1], tonumber(ARGV[1]) + 1}")
    out.append(await script(keys=[f"{prefix}:k"], args=[41]))
    await client.script_flush()
    out.append(await script(keys=[f"{prefix}:k"], args=[1]))  # NOSCRIPT: reloaded, as redis-py does
    # LOADING (a restarted server reading its data) is parsed into BusyLoadingError, a ConnectionError.
    loading = "return redis.error_reply('LOADING Redis is loading the dataset in memory')"
    for failing in (
        client.incr(f"{prefix}:s"),
        client.eval("return redis.error_reply('MINE no')", 0),
        client.eval(loading, 0),
    ):
        try:
            await failing
        except (redis.ResponseError, redis.ConnectionError) as exc:
            out.append((type(exc).__name__, str(exc)))
    return out


async def pipelines(client: aioredis.Redis, prefix: str) -> list[Any]:
    out: list[Any] = []
    for transaction in (False, True):
        async with client.pipeline(transaction=transaction) as pipe:
            pipe.incr(f"{prefix}:p")
            pipe.hset(f"{prefix}:ph", "f", "3")
            pipe.hgetall(f"{prefix}:ph")
            pipe.get(f"{prefix}:none")
            out.append(await pipe.execute())
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(f"{prefix}:str", "x")
        pipe.incr(f"{prefix}:str")
        pipe.get(f"{prefix}:str")
        replies = await pipe.execute(raise_on_error=False)
        out.append([type(r).__name__ if isinstance(r, Exception) else r for r in replies])
    async with client.pipeline(transaction=False) as pipe:
        pipe.incr(f"{prefix}:str")
        with pytest.raises(redis.ResponseError, match="not an integer"):
            await pipe.execute()
    async with client.pipeline(transaction=False) as pipe:
        out.append(await pipe.execute())  # empty
    return out


async def both(server: RedisServer, scenario: Scenario) -> tuple[list[Any], list[Any]]:
    # The same keys, each client in a database of its own.
    theirs, ours = async_redis(server.url.replace("/0", "/1")), hot_path_redis(server.url.replace("/0", "/2"))
    assert isinstance(ours, MultiplexedRedis)
    try:
        return await scenario(theirs, "k"), await scenario(ours, "k")
    finally:
        await theirs.aclose()
        await ours.aclose()


@pytest.mark.parametrize("scenario", [commands, pipelines])
def test_replies_and_errors_are_redis_pys(redis_server: RedisServer, scenario: Scenario) -> None:
    theirs, ours = asyncio.run(both(redis_server, scenario))
    assert ours == theirs
    assert len(ours) > 3


def test_on_uvloop_as_the_proxy_runs(redis_server: RedisServer) -> None:
    theirs, ours = uvloop.run(both(redis_server, commands))
    assert ours == theirs


def test_thousands_in_flight_are_matched_to_their_commands(redis_server: RedisServer) -> None:
    async def burst() -> tuple[list[int], list[Any]]:
        client = hot_path_redis(redis_server.url)
        try:
            counts = await asyncio.gather(*(client.incr("count") for _ in range(3000)))
            await asyncio.gather(*(client.set(f"key:{i}", f"value:{i}") for i in range(500)))
            values = await asyncio.gather(*(client.get(f"key:{i}") for i in range(500)))
            return sorted(counts), values
        finally:
            await client.aclose()

    counts, values = asyncio.run(burst())
    assert counts == list(range(1, 3001))
    assert values == [f"value:{i}".encode() for i in range(500)]


def test_a_cancelled_caller_does_not_shift_the_replies(redis_server: RedisServer) -> None:
    async def scenario() -> list[Any]:
        client = hot_path_redis(redis_server.url)
        try:
            for i in range(200):
                await client.set(f"key:{i}", i)
            tasks = [asyncio.ensure_future(client.get(f"key:{i}")) for i in range(200)]
            await asyncio.sleep(0)  # every command is written
            for task in tasks[::3]:
                task.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            kept = [r for r in done if not isinstance(r, BaseException)]
            return [*kept, await client.get("key:7")]
        finally:
            await client.aclose()

    replies = asyncio.run(scenario())
    expected = [str(i).encode() for i in range(200) if i % 3]
    assert replies == [*expected, b"7"]


def test_a_lost_server_fails_the_commands_and_the_next_one_connects_again(tmp_path: Path) -> None:
    server = RedisServer(port=0, data_dir=tmp_path / "r", persist=False).start()

    async def scenario() -> tuple[type[BaseException], Any]:
        client = hot_path_redis(server.url, socket_connect_timeout=1.0)
        try:
            await client.set("k", "v")
            server.stop()
            with pytest.raises(redis.ConnectionError) as lost:
                await client.get("k")
            server.start()  # the same port, empty
            await client.set("k", "again")
            return lost.type, await client.get("k")
        finally:
            await client.aclose()

    try:
        assert asyncio.run(scenario()) == (redis.ConnectionError, b"again")
    finally:
        server.stop()


def busy_for(seconds: int) -> str:
    """A script that keeps Redis busy for ``seconds``, measured in microseconds: counted in whole seconds
    of TIME, a one-second loop that started late in a second ended at once, before any timeout."""
    now = "(function() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end)"
    return f"local t = {now}() while {now}() - t < {seconds * 1_000_000} do end return 1"


def test_a_stalled_server_times_out_every_command_in_flight(redis_server: RedisServer) -> None:
    busy = busy_for(2)

    async def scenario() -> tuple[list[str], Any]:
        client = hot_path_redis(redis_server.url, socket_timeout=0.3)
        try:
            await client.set("k", "v")
            stalled = await asyncio.gather(client.eval(busy, 0), client.get("k"), return_exceptions=True)
            await asyncio.sleep(2.5)  # the script ends
            return [type(r).__name__ for r in stalled], await client.get("k")
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == (["TimeoutError", "TimeoutError"], b"v")


def test_a_pipeline_cut_off_mid_flight_leaves_no_unread_errors(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A pipeline awaits only its last reply: the errors of the others, failed with it, must not be
    logged by asyncio as never retrieved (CI's log check caught one from the emitter's pipeline)."""
    busy = busy_for(1)

    async def scenario() -> type[BaseException]:
        client = hot_path_redis(redis_server.url, socket_timeout=0.2)
        try:
            pipe = client.pipeline(transaction=False)
            pipe.eval(busy, 0)
            pipe.get("a")
            pipe.get("b")
            with pytest.raises(redis.TimeoutError) as cut_off:
                await pipe.execute()
            await asyncio.sleep(1.2)  # the script ends
            return cut_off.type
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) is redis.TimeoutError
    gc.collect()
    assert [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()] == []


def test_blocking_commands_are_refused_and_the_database_is_the_urls(redis_server: RedisServer) -> None:
    async def scenario() -> bytes | None:
        client = hot_path_redis(redis_server.url.replace("/0", "/3"))
        try:
            with pytest.raises(ValueError, match="BLPOP cannot run on a multiplexed connection"):
                await client.blpop(["q"], timeout=1)
            with pytest.raises(ValueError, match="XREAD BLOCK"):
                await client.xread({"s": "0"}, block=10)
            await client.set("in-db-3", "yes")
        finally:
            await client.aclose()
        plain = redis.Redis.from_url(redis_server.url.replace("/0", "/3"))
        try:
            return plain.get("in-db-3")  # type: ignore[return-value]
        finally:
            plain.close()

    assert asyncio.run(scenario()) == b"yes"


def test_the_event_stream_lands_the_same_through_either_client(redis_server: RedisServer) -> None:
    """``publish_async`` sends its own XADDs on the multiplexed client and a redis-py pipeline on the
    others: the shards must hold the same events either way."""
    batch = events(0, 40)

    async def shards(client: aioredis.Redis) -> list[list[bytes]]:
        try:
            await publish_async(client, batch[:30], 4)
            await publish_async(client, batch[30:], 4)
            entries: Any = [await client.xrange(stream_name(shard)) for shard in range(4)]
            return [[fields[EVENT_FIELD] for _, fields in shard] for shard in entries]
        finally:
            await client.aclose()

    theirs = asyncio.run(shards(async_redis(redis_server.url.replace("/0", "/1"))))
    ours = asyncio.run(shards(hot_path_redis(redis_server.url.replace("/0", "/2"))))
    assert ours == theirs
    assert sorted(payload for shard in ours for payload in shard) == sorted(encode(event) for event in batch)


def test_execute_many_raises_the_first_error_after_every_command_ran(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[list[Any], Any]:
        client = hot_path_redis(redis_server.url)
        assert isinstance(client, MultiplexedRedis)
        try:
            replies = await client.execute_many(
                [("SET", "s", "x"), ("INCRBY", "n", 2), ("XADD", "x", "*", "f", "v")]
            )
            with pytest.raises(redis.ResponseError, match="not an integer"):
                await client.execute_many([("INCR", "s"), ("INCR", "n"), ("INCR", "s")])
            with pytest.raises(ValueError, match="BLPOP cannot run on a multiplexed connection"):
                await client.execute_many([("INCR", "n"), ("BLPOP", "q", 1)])
            return replies, await client.get("n")
        finally:
            await client.aclose()

    replies, counted = asyncio.run(scenario())
    assert replies[:2] == [b"OK", 2]
    assert replies[2].count(b"-") == 1  # a stream entry's id, as Redis sent it
    assert counted == b"3"  # the INCR after the error ran; the refused batch sent nothing
