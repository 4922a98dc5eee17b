"""What the proxy process holds open while it serves; the app's lifespan owns it.

``Resources.open(settings)`` reads the shared clock (``symphony.clock``; real time when
Redis does not answer) and opens the pooled upstream client (``proxy.attempts.upstream``),
the Redis client, the event emitter (``proxy.emitter``) and, when it has a destination (a spans
token or ``TEMPO_ENDPOINT``), tracing (``proxy.tracing``); ``close()`` publishes every queued
event, then closes the clients, then sends the spans still queued (bounded, in a thread). The
lifespan hands them to the parts that use them: the gateway when it starts, and, through a
``ResourceSlot``, the parts that are made with the routes, before the lifespan runs (the
app-key checks, the feedback API).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from proxy import errors
from proxy.attempts.upstream import MAX_CONNECTIONS, HttpClient, new_http_client
from proxy.emitter import EventEmitter
from proxy.tracing import Tracing
from symphony.clock import Clock, RealClock, shared_clock
from symphony.redis_client import hot_path_redis, sync_redis
from symphony.settings import Settings

log = logging.getLogger(__name__)

# On a cluster (redis-py's pools), each request in flight holds a connection while its reservation
# or settlement runs, and redis-py refuses the 101st by default (MaxConnectionsError), which the
# quota gate reads as Redis unreachable: a burst would fail open. As many as the upstream
# connector allows, then. (A blocking pool would wait instead, at about 15 µs more per command.)
REDIS_MAX_CONNECTIONS = MAX_CONNECTIONS


def proxy_redis(url: str) -> aioredis.Redis:
    """The proxy's asyncio Redis client: one multiplexed connection to a single server, short timeouts."""
    return hot_path_redis(
        url, socket_connect_timeout=2.0, socket_timeout=5.0, max_connections=REDIS_MAX_CONNECTIONS
    )


@dataclass(frozen=True, slots=True)
class Resources:
    clock: Clock
    http: HttpClient
    redis: aioredis.Redis
    emitter: EventEmitter
    tracing: Tracing | None = None  # None: tracing is off

    @classmethod
    async def open(cls, settings: Settings) -> Resources:
        clock = await asyncio.to_thread(_read_clock, settings.redis_url)
        client = proxy_redis(settings.redis_url)
        emitter = EventEmitter(client, settings.event_shards)
        emitter.start()
        return cls(clock, new_http_client(), client, emitter, Tracing.from_settings(settings))

    async def close(self) -> None:
        try:
            await self.emitter.close()
        finally:
            await self.http.close()
            await self.redis.aclose()
            if self.tracing is not None:
                await asyncio.to_thread(self.tracing.close)
        log.info(
            "proxy stopped: %d events published, %d dropped", self.emitter.published, self.emitter.dropped
        )


class ResourceSlot:
    """The resources while the lifespan holds them open; a 503 ``not_ready`` before and after."""

    def __init__(self) -> None:
        self._resources: Resources | None = None

    def fill(self, resources: Resources | None) -> None:
        self._resources = resources

    def peek(self) -> Resources | None:
        """The resources, or None outside the lifespan (for parts that do without them)."""
        return self._resources

    def get(self) -> Resources:
        if self._resources is None:
            raise errors.not_started()
        return self._resources


def _read_clock(redis_url: str) -> Clock:
    client = sync_redis(redis_url, socket_connect_timeout=2.0, socket_timeout=2.0)
    try:
        return shared_clock(client)
    except redis.RedisError as exc:
        log.warning("could not read the shared clock from Redis (%s); using real time", exc)
        return RealClock()
    finally:
        client.close()
