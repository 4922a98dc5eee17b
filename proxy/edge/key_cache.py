"""App key records from Redis, each kept in the process for at most half a second.

Every request looks its key up by its public prefix (``symphony.app_keys``). A
record, or the fact that no key has that prefix, is reused for ``TTL_S`` and then
read again, so a key revoked in Redis (``symphony keys revoke``) stops working on
every replica within ``TTL_S`` plus one Redis round trip, and a new budget or
allow-list takes effect as fast. Concurrent lookups of one prefix share one read.

When Redis cannot be reached the cache follows the quota gate's rule
(``QUOTA_FAIL_MODE``): ``open`` keeps using the last record it read (a key revoked
meanwhile keeps working until Redis answers again), ``closed`` refuses with
``KeyStoreUnavailable``, as it does for a prefix it never read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Literal

import redis.asyncio as aioredis

from symphony import clock
from symphony.app_keys import AppKey, record_key
from symphony.redis_server import REDIS_ERRORS

log = logging.getLogger(__name__)

TTL_S = 0.5
MAX_ENTRIES = 10_000  # beyond it, expired entries are dropped (then all, if need be)
LOG_EVERY_S = 30.0


class KeyStoreUnavailable(Exception):
    """Redis cannot be reached and no usable record is cached."""


class AppKeyCache:
    def __init__(
        self,
        client_of: Callable[[], aioredis.Redis],
        *,
        fail_mode: Literal["open", "closed"] = "open",
        ttl_s: float = TTL_S,
    ) -> None:
        self._client_of = client_of
        self._fail_mode = fail_mode
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, AppKey | None]] = {}  # prefix -> (read at, record)
        self._loading: dict[str, asyncio.Future[AppKey | None]] = {}
        self._last_warning = -LOG_EVERY_S

    async def get(self, prefix: str) -> AppKey | None:
        """The record of the key with this prefix, None when there is none."""
        entry = self._entries.get(prefix)
        if entry is not None and clock.monotonic() - entry[0] < self._ttl_s:
            return entry[1]
        loading = self._loading.get(prefix)
        if loading is None:
            loading = asyncio.ensure_future(self._load(prefix))
            self._loading[prefix] = loading
            loading.add_done_callback(lambda _: self._loading.pop(prefix, None))
        return await asyncio.shield(loading)

    def known(self, prefix: str) -> bool:
        """Whether this process has read a key with this prefix (however long ago; no Redis read)."""
        entry = self._entries.get(prefix)
        return entry is not None and entry[1] is not None

    async def _load(self, prefix: str) -> AppKey | None:
        try:
            fields: dict[bytes, bytes] = await self._client_of().hgetall(record_key(prefix))  # type: ignore[assignment]
        except REDIS_ERRORS as exc:
            return self._stale(prefix, exc)
        record = AppKey.from_fields(fields) if fields else None
        if len(self._entries) >= MAX_ENTRIES:
            self._evict()
        self._entries[prefix] = (clock.monotonic(), record)
        return record

    def _stale(self, prefix: str, exc: BaseException) -> AppKey | None:
        entry = self._entries.get(prefix)
        if clock.monotonic() - self._last_warning >= LOG_EVERY_S:
            self._last_warning = clock.monotonic()
            rule = "using the last records read" if self._fail_mode == "open" else "refusing every key"
            log.warning("app keys unreadable (%s): %s until Redis answers", exc.__class__.__name__, rule)
        if self._fail_mode == "closed" or entry is None:
            raise KeyStoreUnavailable(str(exc)) from None
        return entry[1]

    def _evict(self) -> None:
        now = clock.monotonic()
        self._entries = {p: e for p, e in self._entries.items() if now - e[0] < self._ttl_s}
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
