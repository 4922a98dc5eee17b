"""A destination's queue of ended spans, encoded and sent in batches by a thread of its own.

It does what the SDK's ``BatchSpanProcessor`` does for the proxy, with less on the request path:
``on_end`` is an append, a length check and, when a batch is ready, an event set (the SDK's runs
two processors' ``on_end``, a sampling check, a fork check and three length checks, for each of a
request's four spans), and it counts what it drops, which the SDK only logs.

The queue is bounded: when it is full the oldest span goes for the new one and is counted, as
in the SDK. A batch that could not be sent is counted too, and so is what is still queued when
``close_within``'s time is up. Only sampled spans reach it: the proxy's tracer records no other
(``proxy.recorded_spans``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

log = logging.getLogger(__name__)


class SpanSender(Protocol):
    """A back end: sends one serialised ``ExportTraceServiceRequest``, says whether it landed."""

    def send(self, payload: bytes) -> bool: ...

    def shutdown(self) -> None: ...


class SpanQueue(SpanProcessor):
    """Ended spans for one ``sender``, sent every ``delay_s``, or as soon as ``max_batch`` are queued, in
    batches of at most ``max_batch``."""

    def __init__(
        self,
        name: str,
        sender: SpanSender,
        encode: Callable[[Sequence[ReadableSpan]], bytes],
        *,
        max_queue: int,
        max_batch: int,
        delay_s: float,
    ) -> None:
        self._sender = sender
        self._encode = encode
        self._queue: deque[ReadableSpan] = deque(maxlen=max_queue)
        self._max_batch = max_batch
        self._delay_s = delay_s
        self._ready = threading.Event()
        self._stopping = False
        # Taking a batch and giving the queue up at close exclude each other, so that a span is
        # counted once: sent, failed or dropped.
        self._taking = threading.Lock()
        self._abandoned = False
        self.exported = 0
        self.failed = 0
        self.queue_dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"spans-{name}", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self.failed + self.queue_dropped

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a span; runs on the event loop. Unlocked: should the thread take a batch at this
        very moment, one span too many is counted as dropped, which beats locking every span."""
        queue = self._queue
        if len(queue) == queue.maxlen:
            self.queue_dropped += 1  # the deque lets its oldest go for this one
        queue.append(span)
        if len(queue) >= self._max_batch:
            self._ready.set()

    def close_within(self, timeout_s: float) -> None:
        """Send what is queued, for at most ``timeout_s``; what is left then counts as dropped."""
        self._stopping = True
        self._ready.set()
        self._thread.join(timeout_s)
        with self._taking:
            self._abandoned = True
            self.queue_dropped += len(self._queue)
            self._queue.clear()
        self._sender.shutdown()

    def _run(self) -> None:
        while True:
            self._ready.wait(self._delay_s)
            self._ready.clear()
            stopping = self._stopping
            batch = self._take_batch()
            while batch:
                self._send(batch)
                # Spans that came during the post wait for the next round unless a whole batch did:
                # a post costs this thread about 2 ms, and posting each handful that arrived during
                # the last one made ten posts a second at 250 req/s instead of one.
                more = stopping or len(self._queue) >= self._max_batch
                batch = self._take_batch() if more else []
            if stopping:
                return

    def _take_batch(self) -> list[ReadableSpan]:
        with self._taking:
            if self._abandoned:
                return []
            queue = self._queue
            return [queue.popleft() for _ in range(min(len(queue), self._max_batch))]

    def _send(self, batch: list[ReadableSpan]) -> None:
        try:
            sent = self._sender.send(self._encode(batch))
        except Exception:  # a back end's failure must not end the thread: count the batch, go on
            log.exception("sending %d spans failed", len(batch))
            sent = False
        if sent:
            self.exported += len(batch)
        else:
            self.failed += len(batch)
