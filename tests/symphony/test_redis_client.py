"""The hiredis-packed asyncio connection sends what redis-py's own packer sends, and works end to end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from redis.asyncio.connection import Connection

from symphony.quotas.store import RESERVE_LUA
from symphony.redis_client import HiredisPackedConnection, async_redis
from symphony.redis_server import RedisServer

COMMANDS: list[tuple[Any, ...]] = [
    ("GET", "plain"),
    ("SET", "k", "é ünïcode", "PX", 60_000),
    ("HINCRBY", "quota:{openai}:tokens:day", 491_234, -17),
    ("EVALSHA", "a" * 40, 2, b"raw-bytes", "{tag}:key", 0, -1, 2**62, 1.5),
    ("SCRIPT LOAD", "return 1"),
    ("XADD", "symphony:events:0", "*", "e", b"\x00\xff binary"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[str(c[0]) for c in COMMANDS])
def test_packs_the_bytes_redis_py_packs(command: tuple[Any, ...]) -> None:
    ours = b"".join(HiredisPackedConnection().pack_command(*command))
    theirs = b"".join(Connection().pack_command(*command))
    assert ours == theirs


def test_what_hiredis_cannot_pack_fails_as_redis_py_does() -> None:
    with pytest.raises(redis.DataError, match="Invalid input of type: 'bool'"):
        HiredisPackedConnection().pack_command("SET", "k", True)


def test_commands_scripts_and_pipelines_round_trip(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[Any, ...]:
        client = async_redis(redis_server.url)
        try:
            await client.set("greeting", "é")
            script = client.register_script("return {KEYS[1], ARGV[1] + 1}")
            scripted = await script(keys=["greeting"], args=[41])
            async with client.pipeline(transaction=True) as pipe:
                pipe.incr("n").incrby("n", 5).get("greeting")
                piped = await pipe.execute()
            loaded = await client.script_load(RESERVE_LUA)
            return await client.get("greeting"), scripted, piped, await client.script_exists(loaded)
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == ("é".encode(), [b"greeting", 42], [1, 6, "é".encode()], [True])
