"""The proxy's Redis client takes a burst of commands in flight as a burst, not as Redis down."""

from __future__ import annotations

import asyncio

from proxy.resources import REDIS_MAX_CONNECTIONS, proxy_redis
from symphony.redis_server import RedisServer

IN_FLIGHT = 300  # three times redis-py's default pool


def test_hundreds_of_commands_in_flight_each_get_a_connection(redis_server: RedisServer) -> None:
    async def burst() -> list[object]:
        client = proxy_redis(redis_server.url)
        try:
            # Each BLPOP holds its connection for 0.2 s, so all of them are in flight at once.
            return await asyncio.gather(
                *(client.blpop([f"nothing:{i}"], timeout=0.2) for i in range(IN_FLIGHT))
            )
        finally:
            await client.aclose()

    assert asyncio.run(burst()) == [None] * IN_FLIGHT
    assert REDIS_MAX_CONNECTIONS >= IN_FLIGHT
