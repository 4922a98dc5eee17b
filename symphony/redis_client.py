"""The asyncio Redis client the hot path uses: redis-py's, with commands packed by hiredis in C.

redis-py's synchronous client packs commands with hiredis when it is installed, but its
asyncio connection packs them in Python, one ``encode`` and one ``join`` per argument. A
quota reservation sends about 60 arguments, so at 500 requests a second that packing was
the largest single cost in the proxy's profile (``bench/profile_proxy.py``). hiredis packs
the same bytes (``tests/symphony/test_redis_client.py`` compares them) in a few
microseconds. Anything it cannot pack (a bool, a memoryview) goes to redis-py's packer,
which raises the error redis-py would.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection


class HiredisPackedConnection(Connection):
    """A redis-py asyncio connection whose commands hiredis packs."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str) and " " in name:  # "SCRIPT LOAD": Redis wants the words apart
            args = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


def async_redis(url: str, **options: Any) -> aioredis.Redis:
    """``redis.asyncio.Redis.from_url(url, **options)`` on connections that pack with hiredis."""
    return aioredis.Redis.from_url(url, connection_class=HiredisPackedConnection, **options)
