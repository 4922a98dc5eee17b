"""The proxy's quota gate: reserve before an attempt, settle after it, whatever Redis is doing.

Reservations go to Redis (one atomic script, ``symphony.quota_store``), so caps hold
across every proxy replica. When Redis cannot be reached the gate follows the
configured rule: ``open`` keeps serving on the in-process twin
(``symphony.quota_local``) holding a share of every cap; ``closed`` refuses until
Redis answers again. Either way it says so in the log once per interval, and
tries Redis again after a short pause, so it recovers by itself. Settlements of
Redis reservations that fail meanwhile are kept and replayed on recovery, so the
buckets end up holding what was really used.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from symphony import clock
from symphony.clock import Clock
from symphony.quota_local import LocalQuotaStore
from symphony.quota_store import AsyncQuotaStore, Refusal, Reservation
from symphony.quotas import QuotaPolicy

log = logging.getLogger(__name__)

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
RETRY_REDIS_AFTER_S = 1.0
LOG_EVERY_S = 30.0
MAX_PENDING_SETTLEMENTS = 100_000
CLOSED_RETRY_AFTER_MS = 1000


@dataclass(frozen=True, slots=True)
class Grant:
    reservation: Reservation
    local: bool  # reserved on the local limiter while Redis was unreachable


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Fail-closed and Redis unreachable: no reservation can be made."""

    retry_after_ms: int = CLOSED_RETRY_AFTER_MS

    @property
    def message(self) -> str:
        return "the quota store is unreachable (fail-closed)"


class QuotaGuard:
    def __init__(
        self,
        client: aioredis.Redis,
        policy: QuotaPolicy,
        event_clock: Clock,
        *,
        fail_mode: Literal["open", "closed"],
        local_share: float,
    ) -> None:
        self._store = AsyncQuotaStore(client)
        self._local = LocalQuotaStore(share=local_share)
        self._policy = policy
        self._clock = event_clock
        self._fail_mode = fail_mode
        self._down_until = 0.0
        self._last_warning = -LOG_EVERY_S
        self._degraded = False
        self._pending: deque[tuple[Reservation, int]] = deque(maxlen=MAX_PENDING_SETTLEMENTS)
        self.local_grants = 0  # reservations made on the local limiter
        self.local_tokens = 0  # tokens those reservations settled at (never reach Redis)

    @property
    def degraded(self) -> bool:
        return self._degraded

    async def reserve(self, provider: str, model: str, tokens: int) -> Grant | Refusal | Unavailable:
        limits = self._policy.limits(provider, model)
        now = self._clock.now_ms()
        if clock.monotonic() >= self._down_until:
            try:
                outcome = await self._store.reserve(
                    limits, now, provider=provider, model=model, tokens=tokens
                )
            except REDIS_ERRORS as exc:
                self._went_down(exc)
            else:
                await self._recovered()
                return Grant(outcome, local=False) if isinstance(outcome, Reservation) else outcome
        if self._fail_mode == "closed":
            return Unavailable()
        self._local.forget_expired(now)
        local = self._local.reserve(limits, now, provider=provider, model=model, tokens=tokens)
        if not isinstance(local, Reservation):
            return local
        self.local_grants += 1
        return Grant(local, local=True)

    async def settle(self, grant: Grant, actual_tokens: int) -> None:
        if grant.local:
            self._local.settle(grant.reservation, actual_tokens)
            self.local_tokens += actual_tokens
            return
        try:
            await self._store.settle(grant.reservation, actual_tokens)
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            self._pending.append((grant.reservation, actual_tokens))

    def _went_down(self, exc: BaseException) -> None:
        self._down_until = clock.monotonic() + RETRY_REDIS_AFTER_S
        self._degraded = True
        if clock.monotonic() - self._last_warning >= LOG_EVERY_S:
            self._last_warning = clock.monotonic()
            rule = (
                f"fail-open on the local limiter ({self._local.share:.0%} of each cap)"
                if self._fail_mode == "open"
                else "fail-closed: refusing requests until it is back"
            )
            log.warning("quota store unreachable (%s); %s", exc.__class__.__name__, rule)

    async def _recovered(self) -> None:
        if not self._degraded:
            return
        self._degraded = False
        replayed = 0
        while self._pending:
            reservation, actual = self._pending[0]
            try:
                await self._store.settle(reservation, actual)
            except REDIS_ERRORS as exc:
                self._went_down(exc)
                return
            self._pending.popleft()
            replayed += 1
        log.warning(
            "quota store reachable again: reservations back in Redis (%d settlements replayed)", replayed
        )
