"""Failed authentications per client address, limited across every proxy replica.

Each failure increments ``symphony:authfail:<address>:<minute>`` in Redis (a fixed
window of one real minute, expiring after two), so the count is shared by every
replica. The failure that takes the count past the limit is answered 429 with
``retry-after`` (the rest of the minute) instead of 401, and the replica that saw
it then refuses that address outright, without looking at its key, until the
minute ends. Another replica learns it at its own next failure from that address,
so across all replicas an address gets at most the limit of 401s per minute;
until then a replica still serves that address's requests with valid keys, which
costs no Redis round trip on the path of a good request.

A blocked address is refused its guesses, not its valid keys: while it is blocked,
a key is still verified, once per prefix (``may_try``): a valid key is served, a
failure answers 429 and spends that prefix for the address until the block ends
(``spend``). A prefix this replica has never read costs a Redis read, so only
``LOOKUPS_WHILE_BLOCKED`` of those are tried per address and block; the rest get
429 unread. So a blocked address gets at most one answer per existing key (and a few
more) per replica and minute beside the limit: no faster guessing of any key, and
no unlimited Redis reads.

Real time, not the simulated clock: this defends against real clients. When Redis
cannot be reached the count is kept per replica. The address is the connection's
(ASGI ``client``); behind a load balancer uvicorn takes it from ``X-Forwarded-For``
when the balancer's address is in uvicorn's ``FORWARDED_ALLOW_IPS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis.asyncio as aioredis

from symphony import clock
from symphony.keys import AUTH_FAILURE_PREFIX
from symphony.redis_server import REDIS_ERRORS

log = logging.getLogger(__name__)

WINDOW_MS = 60_000
KEY_PREFIX = AUTH_FAILURE_PREFIX
MAX_TRACKED = 10_000  # addresses held locally before expired ones are dropped
LOOKUPS_WHILE_BLOCKED = 4  # prefixes never read that a blocked address may still have looked up


def failure_key(address: str, window: int) -> str:
    return f"{KEY_PREFIX}{address}:{window}"


class AuthFailures:
    def __init__(
        self,
        client_of: Callable[[], aioredis.Redis],
        per_minute: int,
        *,
        now_ms: Callable[[], int] = clock.wall_ms,
    ) -> None:
        self._client_of = client_of
        self._per_minute = per_minute
        self._now_ms = now_ms
        self._blocked: dict[str, int] = {}  # address -> end of its window (epoch ms)
        self._local: dict[tuple[str, int], int] = {}  # (address, window) -> failures, while Redis is down
        self._spent: dict[tuple[str, str], int] = {}  # (address, prefix) tried while blocked -> block's end
        self._lookups: dict[str, tuple[int, int]] = {}  # address -> (block end, unread prefixes tried)

    def blocked_for_s(self, address: str) -> float | None:
        """Seconds this address stays refused, or None when it may try."""
        until = self._blocked.get(address)
        if until is None:
            return None
        left = until - self._now_ms()
        if left <= 0:
            del self._blocked[address]
            return None
        return left / 1000

    def may_try(self, address: str, prefix: str, *, read: bool) -> bool:
        """Whether a blocked address may have a key with this prefix verified; ``read``: one this
        replica has read (else a try takes one of the block's ``LOOKUPS_WHILE_BLOCKED``)."""
        now = self._now_ms()
        if self._spent.get((address, prefix), 0) > now:
            return False
        if read:
            return True
        until = self._blocked.get(address, now)
        end, tried = self._lookups.get(address, (until, 0))
        tried = tried if end > now else 0
        if tried >= LOOKUPS_WHILE_BLOCKED:
            return False
        if len(self._lookups) >= MAX_TRACKED:
            self._lookups = {a: v for a, v in self._lookups.items() if v[0] > now}
        self._lookups[address] = (until, tried + 1)
        return True

    def spend(self, address: str, prefix: str) -> None:
        """A key with this prefix failed from a blocked address: no more tries until its block ends."""
        now = self._now_ms()
        if len(self._spent) >= MAX_TRACKED:
            self._spent = {k: t for k, t in self._spent.items() if t > now}
        self._spent[(address, prefix)] = self._blocked.get(address, now)

    async def failed(self, address: str) -> float | None:
        """Count a failure; the seconds to refuse the address for when it is now over the limit."""
        now = self._now_ms()
        window = now // WINDOW_MS
        count = await self._count(address, window)
        if count <= self._per_minute:
            return None
        until = (window + 1) * WINDOW_MS
        if len(self._blocked) >= MAX_TRACKED:
            self._blocked = {a: t for a, t in self._blocked.items() if t > now}
        self._blocked[address] = until
        return (until - now) / 1000

    async def _count(self, address: str, window: int) -> int:
        key = failure_key(address, window)
        try:
            async with self._client_of().pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.pexpire(key, 2 * WINDOW_MS)
                count, _ = await pipe.execute()
            return int(count)
        except REDIS_ERRORS as exc:
            log.debug("auth failures counted locally: Redis unreachable (%s)", exc.__class__.__name__)
        if len(self._local) >= MAX_TRACKED:
            self._local = {k: v for k, v in self._local.items() if k[1] >= window}
        self._local[(address, window)] = self._local.get((address, window), 0) + 1
        return self._local[(address, window)]
