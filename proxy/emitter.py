"""Events off the hot path: an in-memory queue drained to the Redis stream in batches.

``emit()`` never waits: it appends to a bounded queue and wakes the drain task,
which publishes whatever is queued (up to ``batch_size``) in one pipeline with
``symphony.stream.publish_async``. If Redis is unreachable the batch goes back to
the front of the queue and the task retries with exponential backoff; when the
queue is full the oldest events are dropped and counted (and logged). ``close()``
drains the queue completely before returning, within a deadline, so a graceful
shutdown (SIGTERM) loses nothing while Redis answers.

Delivery is at least once: a pipeline cut mid-way can be retried whole, and the
sinks de-duplicate by ``event_id``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from symphony.clock import monotonic
from symphony.events import Event
from symphony.stream import publish_async

log = logging.getLogger(__name__)


class EventEmitter:
    def __init__(
        self,
        client: aioredis.Redis,
        shards: int,
        *,
        max_pending: int = 100_000,
        batch_size: int = 512,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
    ) -> None:
        self._client = client
        self._shards = shards
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._pending: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._close_deadline: float | None = None
        self.published = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="symphony-event-emitter")

    def emit(self, event: Event) -> None:
        """Queue one event for publishing; never blocks."""
        self._pending.append(event)
        self._trim()
        self._wakeup.set()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Publish everything queued, giving up on Redis after ``timeout_s``; stop the task."""
        if self._task is None:
            return
        self._close_deadline = monotonic() + timeout_s
        self._wakeup.set()
        try:
            await self._task
        finally:
            self._task = None
        if self._pending:
            self._drop(len(self._pending), "Redis unreachable at shutdown")

    def _trim(self) -> None:
        excess = len(self._pending) - self._max_pending
        if excess > 0:
            for _ in range(excess):
                self._pending.popleft()
            self._drop(excess, "queue full", already_removed=True)

    def _drop(self, count: int, why: str, *, already_removed: bool = False) -> None:
        if not already_removed:
            for _ in range(count):
                self._pending.popleft()
        first = self.dropped == 0
        self.dropped += count
        if first or self.dropped % 1000 < count:
            log.warning(
                "event emitter dropped %d event(s) (%s); %d dropped in total", count, why, self.dropped
            )

    def _closing(self) -> bool:
        return self._close_deadline is not None

    def _past_deadline(self) -> bool:
        return self._close_deadline is not None and monotonic() > self._close_deadline

    async def _drain(self) -> None:
        backoff_s = self._backoff_initial_s
        while True:
            if not self._pending:
                if self._closing():
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._pending.popleft() for _ in range(min(self._batch_size, len(self._pending)))]
            try:
                await publish_async(self._client, batch, self._shards)
            except (RedisError, OSError) as exc:
                self._pending.extendleft(reversed(batch))
                self._trim()
                if self._past_deadline():
                    return
                log.warning(
                    "event emitter: Redis unavailable (%s); %d queued, retry in %.2fs",
                    exc,
                    len(self._pending),
                    backoff_s,
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._backoff_max_s)
                continue
            except Exception:
                log.exception("event emitter: could not publish a batch of %d; dropping it", len(batch))
                self.dropped += len(batch)
                continue
            self.published += len(batch)
            backoff_s = self._backoff_initial_s
