"""``LuaScript`` answers as redis-py's ``AsyncScript`` does, on a real server and on a real cluster,
through the client the proxy uses there: the reply, the reload after the server lost its scripts,
and a script's error."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from symphony.lua_script import LuaScript
from symphony.redis_client import hot_path_redis
from symphony.redis_cluster import LocalCluster
from symphony.redis_server import RedisServer

SOURCE = """
if ARGV[1] == 'fail' then return redis.error_reply('MINE refused') end
return {KEYS[1], redis.call('INCRBY', KEYS[1], ARGV[1]), ARGV[2]}
"""


async def runs(client: aioredis.Redis, script: LuaScript | AsyncScript, key: str) -> list[Any]:
    async def call(*args: Any) -> Any:
        if isinstance(script, LuaScript):
            return await script([key], list(args))
        return await script(keys=[key], args=list(args))

    out = [await call(5, "é")]
    await client.script_flush()  # every node of a cluster: NOSCRIPT next, then loaded again
    out.append(await call(2, b"\x00\xff"))
    try:
        await call("fail", "")
    except redis.ResponseError as exc:
        out.append((type(exc).__name__, str(exc)))
    return out


async def both(url: str) -> tuple[list[Any], list[Any]]:
    client = hot_path_redis(url)
    try:
        theirs = await runs(client, client.register_script(SOURCE), "{s}:theirs")
        ours = await runs(client, LuaScript(client, SOURCE), "{s}:ours")
        return theirs, ours
    finally:
        await client.aclose()


def test_answers_reloads_and_fails_as_redis_pys_script(any_redis: RedisServer | LocalCluster) -> None:
    theirs, ours = asyncio.run(both(any_redis.url))
    assert (
        [reply[1:] for reply in ours[:2]]
        == [reply[1:] for reply in theirs[:2]]
        == [[5, "é".encode()], [7, b"\x00\xff"]]
    )
    assert [reply[0] for reply in ours[:2]] == [b"{s}:ours"] * 2
    assert ours[2] == theirs[2] == ("ResponseError", "MINE refused")
