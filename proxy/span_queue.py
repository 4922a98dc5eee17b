"""A destination's queue of ended spans, sent in batches by a thread of its own.

It does what the SDK's ``BatchSpanProcessor`` does for the proxy, with less on the request path:
``SpanEncoder.on_end`` encodes a span once (``proxy.otlp_encoding.encode_span``) for every
destination, and ``put`` is an append, a length check and, when a batch is ready, an event set (the
SDK's runs two processors' ``on_end``, a sampling check, a fork check and three length checks, for
each of a request's four spans); it counts what it drops, which the SDK only logs.

The queue holds each span's bytes, not the span: a queued span object (its attribute dict, its
contexts) is something every garbage collection walks while it waits its second or so for export,
and the traced proxy's collections ran to 5 ms with them; and encoding the spans a batch at a time
held the GIL from the event loop for about 20 ms at 2,048 spans, where putting encoded spans together
is a copy. Encoding as a span ends costs the event loop what the exporter's thread spent on it.

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

from proxy.otlp_encoding import encode_span

log = logging.getLogger(__name__)


class SpanSender(Protocol):
    """A back end: sends one serialised ``ExportTraceServiceRequest``, says whether it landed."""

    def send(self, payload: bytes) -> bool: ...

    def shutdown(self) -> None: ...


class SpanQueue:
    """Encoded spans for one ``sender``, sent every ``delay_s``, or as soon as ``max_batch`` are queued, in
    batches of at most ``max_batch``, each put together by ``encode_batch``."""

    def __init__(
        self,
        name: str,
        sender: SpanSender,
        encode_batch: Callable[[Sequence[bytes]], bytes],
        *,
        max_queue: int,
        max_batch: int,
        delay_s: float,
    ) -> None:
        self._sender = sender
        self._encode_batch = encode_batch
        self._queue: deque[bytes] = deque(maxlen=max_queue)
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

    def put(self, encoded_span: bytes) -> None:
        """Queue a span's bytes; runs on the event loop. Unlocked: should the thread take a batch at this
        very moment, one span too many is counted as dropped, which beats locking every span."""
        queue = self._queue
        if len(queue) == queue.maxlen:
            self.queue_dropped += 1  # the deque lets its oldest go for this one
        queue.append(encoded_span)
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

    def _take_batch(self) -> list[bytes]:
        with self._taking:
            if self._abandoned:
                return []
            queue = self._queue
            return [queue.popleft() for _ in range(min(len(queue), self._max_batch))]

    def _send(self, batch: list[bytes]) -> None:
        try:
            sent = self._sender.send(self._encode_batch(batch))
        except Exception:  # a back end's failure must not end the thread: count the batch, go on
            log.exception("sending %d spans failed", len(batch))
            sent = False
        if sent:
            self.exported += len(batch)
        else:
            self.failed += len(batch)


class SpanEncoder(SpanProcessor):
    """Encodes each ended span once, on the thread that ends it, and queues its bytes for each destination."""

    def __init__(self, queues: Sequence[SpanQueue]) -> None:
        self._queues = tuple(queues)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            encoded = encode_span(span)
        except Exception:  # runs in the request that ended the span: a span lost, never the request
            log.exception("encoding the span %r failed; it is dropped", span.name)
            for queue in self._queues:
                queue.queue_dropped += 1
            return
        self.put(encoded)

    def put(self, encoded_span: bytes) -> None:
        """Queue a span's bytes for each destination: ``on_end``'s, or a span written from its fields."""
        for queue in self._queues:
            queue.put(encoded_span)
