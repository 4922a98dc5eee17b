"""Reservations through an asyncio Redis client (the proxy): ``QuotaStore``'s twin, whose concurrent
reservations against the same limits share one script call (``symphony.quotas.batches``)."""

from __future__ import annotations

from collections.abc import Sequence

import redis
import redis.asyncio as aioredis

from symphony.keys import QUOTA_PROBE_KEY
from symphony.lua_script import LuaScript
from symphony.quotas.batches import Request, ReservationBatches
from symphony.quotas.rules import Limit
from symphony.quotas.store import (
    NOTHING,
    PROBE_TTL_MS,
    RESERVE_LUA,
    SETTLE_LUA,
    Amounts,
    Arg,
    Refusal,
    Reservation,
    layout_of,
    raise_if_refused,
)


class AsyncQuotaStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._batches = ReservationBatches(LuaScript(client, RESERVE_LUA))
        self._settle = LuaScript(client, SETTLE_LUA)

    async def writable(self) -> None:
        """Raise one of ``REDIS_ERRORS`` unless Redis answers and takes a write (``WritesRefused`` when
        it answers but refuses: a PING would pass on a full server, a replica, after a failed save)."""
        try:
            await self._client.set(QUOTA_PROBE_KEY, "1", px=PROBE_TTL_MS)
        except redis.ResponseError as exc:
            raise_if_refused(exc)
            raise

    async def reserve(
        self,
        limits: Sequence[Limit],
        now_ms: int,
        *,
        provider: str,
        model: str,
        tokens: int,
        cost_micros: int = 0,
        requests: int = 1,
    ) -> Reservation | Refusal:
        """Reserve now, or with the next batch against the same limits (``symphony.quotas.batches``).

        Raises ``ReservationLost`` when Redis failed during the call: it may or may not have been made."""
        request = Request(Amounts(tokens, cost_micros, requests), now_ms, provider, model)
        return await self._batches.reserve(layout_of(tuple(limits)), request)

    async def settle(
        self,
        reservation: Reservation,
        actual_tokens: int,
        actual_cost_micros: int = 0,
        *,
        refund: bool = False,
    ) -> None:
        actual = reservation.actual(actual_tokens, actual_cost_micros, refund=refund)
        await self.settle_to(reservation, actual)

    async def settle_to(self, reservation: Reservation, actual: Amounts) -> None:
        """Correct the reserved buckets to ``actual`` (its requests too: a lease settles at those used)."""
        call = reservation.settle_call(actual)
        if call is not None:
            await self._settled(call)

    async def cancel(self, reservation: Reservation) -> None:
        call = reservation.settle_call(NOTHING, cancel=True)
        if call is not None:
            await self._settled(call)

    async def _settled(self, call: tuple[list[str], list[Arg]]) -> None:
        """Run SETTLE_LUA; ``WritesRefused`` (one of ``REDIS_ERRORS``) when Redis takes no writes."""
        try:
            await self._settle(*call)
        except redis.ResponseError as exc:
            raise_if_refused(exc)
            raise
