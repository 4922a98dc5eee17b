"""This proxy process's circuit breakers, published to Redis every second for the operator console.

A task of the event loop (``proxy.periodic``) reads the breakers (``Health.breakers``) and writes
them, in one pipeline, to ``symphony:breakers:<replica>`` with a TTL and the replica's name into
``symphony:breakers`` (the layout and the reader: ``symphony.breakers``). Nothing runs per request:
a request never waits for it, and it never waits for a request. Redis away: logged once, retried
at the next tick; the breakers themselves are unaffected.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from proxy.periodic import Periodic
from proxy.routing.health import Health
from symphony import clock
from symphony.breakers import INTERVAL_S, TTL_S, BreakerState, encode
from symphony.keys import BREAKER_REPLICAS, breakers_key

log = logging.getLogger(__name__)


class BreakerStates:
    def __init__(
        self, client: aioredis.Redis, health: Health, replica: str, interval_s: float = INTERVAL_S
    ) -> None:
        self._client = client
        self._health = health
        self._replica = replica
        self._failing = False
        self._interval_s = interval_s
        self._task = Periodic("breaker-states", interval_s, self.publish)

    def start(self) -> None:
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    async def publish(self) -> None:
        states = self._health.breakers(clock.monotonic())
        key = breakers_key(self._replica)
        now_ms = clock.wall_ms()
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(key)  # a provider that left the pool leaves the hash
        if states:
            mapping = {
                provider: encode(_state(state), reason) for provider, (state, reason) in states.items()
            }
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            pipe.pexpire(key, int(TTL_S * 1000))
        pipe.zadd(BREAKER_REPLICAS, {self._replica: now_ms})
        pipe.zremrangebyscore(BREAKER_REPLICAS, "-inf", now_ms - int(TTL_S * 1000))
        try:
            await pipe.execute()
        except Exception as exc:  # Redis away, a cluster without a node: the task must live on to retry
            if not self._failing:
                log.warning(
                    "cannot publish the breakers' states to Redis (%s); retrying every %g s",
                    exc,
                    self._interval_s,
                )
            self._failing = True
            return
        if self._failing:
            log.info("publishing the breakers' states to Redis again")
        self._failing = False


def _state(state: str) -> BreakerState:
    return "open" if state == "open" else "half-open" if state == "half-open" else "closed"
