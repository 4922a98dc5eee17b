"""Spans into ClickHouse ``otel_traces`` from a bounded buffer, written by a thread of their own.

The engine's ``POST /v1/traces`` decodes a request's spans and ``offer``s them here; the
answer does not wait for ClickHouse. A thread inserts what is buffered every ``interval_s``
(sooner once ``flush_rows`` are waiting), on a write handle of its own
(``ClickHouseStore.open_writer``), so span writes never hold up the event sink, nor it them.

Bounded: the buffer holds at most ``max_rows`` spans. When an insert fails (ClickHouse
down), the batch is kept and retried after a capped backoff, and the buffer fills; once
full, ``offer`` refuses the whole request (the API answers 503 with ``Retry-After``, which
OTLP exporters retry and then drop, counting it on their side). So what is accepted is
written, unless the engine stops first: ``stop`` makes one last attempt and counts what is
left as dropped. Counters for ``/metrics``: ``received``, ``written``, ``refused``, ``dropped``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from sinks.otel_traces import OTEL_TRACES

log = logging.getLogger(__name__)

MAX_BUFFER_ROWS = 50_000  # about 10 s of spans at 1,000 req/s (5 spans each)
FLUSH_ROWS = 5_000
INTERVAL_S = 1.0
BACKOFF_CAP_S = 5.0


class TableWriter(Protocol):
    def insert_arrow(self, table: str, data: pa.Table) -> None: ...


@dataclass
class SpanStats:
    received: int = 0  # spans accepted into the buffer
    written: int = 0  # spans inserted into otel_traces
    refused: int = 0  # spans refused because the buffer was full
    dropped: int = 0  # spans accepted but never written (left at stop)
    failures: int = 0  # inserts that failed (and were retried)
    buffered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class SpanWriter:
    """A bounded buffer of span rows and the thread that inserts them."""

    def __init__(
        self,
        writer: TableWriter,
        *,
        max_rows: int = MAX_BUFFER_ROWS,
        flush_rows: int = FLUSH_ROWS,
        interval_s: float = INTERVAL_S,
        table: str = OTEL_TRACES,
    ) -> None:
        self._writer = writer
        self._max_rows = max_rows
        self._flush_rows = flush_rows
        self._interval_s = interval_s
        self._table = table
        self._pending: deque[pa.Table] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._stopping = False
        self.stats = SpanStats()
        self._thread = threading.Thread(target=self._run, name="span-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, rows: pa.Table) -> bool:
        """Buffer ``rows`` for the next insert; False (nothing taken) when they do not fit."""
        with self._wake:
            if self._stopping or self.stats.buffered + rows.num_rows > self._max_rows:
                with self.stats.lock:
                    self.stats.refused += rows.num_rows
                return False
            self._pending.append(rows)
            with self.stats.lock:
                self.stats.buffered += rows.num_rows
                self.stats.received += rows.num_rows
                full = self.stats.buffered >= self._flush_rows
            if full:
                self._wake.notify()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Insert what is buffered (one attempt), then stop; what is left is counted as dropped."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self.stats.lock:
            left = self.stats.buffered
            self.stats.dropped += left
            self.stats.buffered = 0
        if left:
            log.warning("stopping with %d spans not written to %s: dropped", left, self._table)

    def _run(self) -> None:
        failures = 0
        while True:
            with self._wake:
                if not self._stopping:
                    delay = self._interval_s if not failures else min(BACKOFF_CAP_S, 0.5 * 2**failures)
                    # A retry waits out its backoff, however full the buffer.
                    self._wake.wait_for(
                        self._stopping_or_ready if not failures else self._stopping_now, delay
                    )
                stopping = self._stopping
                batch = list(self._pending)
            if batch:
                failures = 0 if self._insert(batch) else failures + 1
            if stopping:
                return

    def _stopping_now(self) -> bool:
        return self._stopping

    def _stopping_or_ready(self) -> bool:
        with self.stats.lock:
            return self._stopping or self.stats.buffered >= self._flush_rows

    def _insert(self, batch: list[pa.Table]) -> bool:
        data = pa.concat_tables(batch) if len(batch) > 1 else batch[0]
        try:
            self._writer.insert_arrow(self._table, data)
        except Exception as exc:  # kept and retried: the buffer's bound is the back-pressure
            with self.stats.lock:
                self.stats.failures += 1
            log.warning(
                "writing %d spans to %s failed, retrying: %s",
                data.num_rows,
                self._table,
                str(exc).strip()[:300] or type(exc).__name__,
            )
            return False
        with self._wake:
            for _ in batch:
                self._pending.popleft()
        with self.stats.lock:
            self.stats.buffered -= data.num_rows
            self.stats.written += data.num_rows
        return True
