"""The proxy's Redis client takes a burst of commands in flight as a burst, not as Redis down."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.resources import proxy_redis
from symphony.redis_mux import MultiplexedRedis
from symphony.redis_server import RedisServer

IN_FLIGHT = 1000  # ten times redis-py's default pool, which refused the 101st (MaxConnectionsError)


def test_a_burst_of_reservations_in_flight_all_reach_redis(redis_server: RedisServer) -> None:
    script = "redis.call('INCR', KEYS[1]) return redis.call('GET', KEYS[1])"

    async def burst() -> list[Any]:
        client = proxy_redis(redis_server.url)
        assert isinstance(client, MultiplexedRedis)  # one server: one multiplexed connection
        try:
            reserve = client.register_script(script)
            return await asyncio.gather(*(reserve(keys=["reservations"]) for _ in range(IN_FLIGHT)))
        finally:
            await client.aclose()

    assert sorted(int(r) for r in asyncio.run(burst())) == list(range(1, IN_FLIGHT + 1))
