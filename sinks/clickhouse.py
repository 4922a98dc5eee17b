"""Events and dead letters into ClickHouse: Arrow columns in, one ``insert_arrow`` per table per batch.

The Arrow schemas here mirror the tables of ``sinks.clickhouse_schema``; a test
keeps the two in step. ``to_arrow`` builds columns, not rows; a value ClickHouse
cannot hold (an integer too large for its column, a time past 2299) is reported
per row so the caller can dead-letter that event and keep the rest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from typing_extensions import override

from sinks import otel_traces
from sinks.chdb_fatal import ClickHouseFatal, fatal_message
from symphony import clock
from symphony.alerts import Alert
from symphony.quotas import Eta

log = logging.getLogger(__name__)

TIMESTAMP = pa.timestamp("ms", tz="UTC")
STRING = pa.string()
FLOAT = pa.float64()
FLOAT_MAP = pa.map_(pa.string(), pa.float64())
STRING_MAP = pa.map_(pa.string(), pa.string())

# DateTime64(3) holds times up to 2299-12-31 23:59:59.999 UTC.
MAX_TS_MS = 10_413_791_999_999

# A write still failing after this many attempts is logged as an error, not a warning.
ALARM_AFTER_ATTEMPTS = 5

DEAD_LETTERS = "dead_letters"
QUOTA_SNAPSHOTS = "quota_snapshots"
LEARNER_METRICS = "learner_metrics"
ALERTS = "alerts"
EVIDENCE_BUNDLES = "evidence_bundles"

# table -> Arrow schema, in the table's column order
SCHEMAS: dict[str, pa.Schema] = {
    "decisions": pa.schema(
        [
            ("event_id", STRING),
            ("ts", TIMESTAMP),
            ("schema_version", pa.uint16()),
            ("decision_id", STRING),
            ("request_id", STRING),
            ("app", STRING),
            ("task", STRING),
            ("features", FLOAT_MAP),
            ("candidates", pa.list_(STRING)),
            ("probabilities", pa.list_(FLOAT)),
            ("provider", STRING),
            ("model", STRING),
            ("policy", STRING),
            ("policy_version", STRING),
            ("propensity", FLOAT),
            ("overrides", STRING_MAP),
            ("quota_remaining", FLOAT_MAP),
            ("stream", pa.bool_()),
            ("trace_id", STRING),
            ("span_id", STRING),
            ("fallbacks", pa.list_(STRING)),
            ("fallback_statuses", pa.list_(STRING)),
            ("served_by", STRING),
        ]
    ),
    "usage": pa.schema(
        [
            ("event_id", STRING),
            ("ts", TIMESTAMP),
            ("schema_version", pa.uint16()),
            ("decision_id", STRING),
            ("app", STRING),
            ("provider", STRING),
            ("model", STRING),
            ("attempt", pa.uint16()),
            ("status", STRING),
            ("ttfb_ms", FLOAT),
            ("latency_ms", FLOAT),
            ("input_tokens", pa.uint64()),
            ("output_tokens", pa.uint64()),
            ("cost_usd", FLOAT),
            ("rate_limit", STRING_MAP),
            ("fallback_from", STRING),
        ]
    ),
    "feedback": pa.schema(
        [
            ("event_id", STRING),
            ("ts", TIMESTAMP),
            ("schema_version", pa.uint16()),
            ("decision_id", STRING),
            ("score", FLOAT),
            ("source", STRING),
        ]
    ),
    "promotions": pa.schema(
        [
            ("event_id", STRING),
            ("ts", TIMESTAMP),
            ("schema_version", pa.uint16()),
            ("version", STRING),
            ("champion_version", STRING),
            ("challenger_version", STRING),
            ("candidate", pa.bool_()),
            ("uplift_low", FLOAT),
            ("forced_over", pa.list_(STRING)),
            ("base", STRING),
            ("branch", STRING),
            ("commit", STRING),
            ("pull_request_url", STRING),
            ("pull_request_number", pa.uint32()),
            ("diff", STRING),
        ]
    ),
    DEAD_LETTERS: pa.schema(
        [
            ("stream", STRING),
            ("entry_id", STRING),
            ("payload", pa.binary()),
            ("reason", STRING),
            ("received_at", TIMESTAMP),
        ]
    ),
    QUOTA_SNAPSHOTS: pa.schema(
        [
            ("as_of", TIMESTAMP),
            ("provider", STRING),
            ("metric", STRING),
            ("window", STRING),
            ("cap", pa.uint64()),
            ("used", pa.uint64()),
            ("remaining", pa.uint64()),
            ("reset_in_ms", pa.int64()),
            ("exhaust_in_ms", pa.int64()),
            ("burn_per_min", FLOAT),
        ]
    ),
    # One row per evaluation, 24h window, group (all, task:..., model:...) and estimator.
    LEARNER_METRICS: pa.schema(
        [
            ("as_of", TIMESTAMP),
            ("window_start", TIMESTAMP),
            ("group", STRING),
            ("champion_version", STRING),
            ("challenger_version", STRING),
            ("estimator", STRING),
            ("value", FLOAT),
            ("low", FLOAT),
            ("high", FLOAT),
            ("samples", pa.uint64()),
            ("effective_samples", FLOAT),
            ("champion", FLOAT),
            ("uplift_low", FLOAT),
            ("slo_p95_ms", FLOAT),
            ("slo_error_rate", FLOAT),
            ("slo_breached", pa.bool_()),
            ("promotion_candidate", pa.bool_()),
        ]
    ),
    # One row per SLO alert transition: fired, resolved (dataflows.slo).
    ALERTS: pa.schema(
        [
            ("at", TIMESTAMP),
            ("alert_id", STRING),
            ("status", STRING),
            ("alertname", STRING),
            ("provider", STRING),
            ("model", STRING),
            ("objective", STRING),
            ("value", FLOAT),
            ("threshold", FLOAT),
            ("started_at", TIMESTAMP),
            ("window_ms", pa.uint64()),
            ("attempts", pa.uint64()),
            ("trace_id", STRING),
            ("decision_id", STRING),
            ("trace_url", STRING),
        ]
    ),
    # One row per evidence bundle written (sinks.evidence.records); a ticket's links update it.
    EVIDENCE_BUNDLES: pa.schema(
        [
            ("bundle_id", STRING),
            ("incident_id", STRING),
            ("decision_id", STRING),
            ("trigger", STRING),
            ("at", TIMESTAMP),
            ("path", STRING),
            ("sha256", STRING),
            ("bytes", pa.uint64()),
            ("file_hashes", STRING_MAP),
            ("ticket_links", pa.list_(STRING)),
            ("recorded_at", TIMESTAMP),
        ]
    ),
    # The proxy's spans, in the OpenTelemetry collector's ClickHouse exporter schema.
    otel_traces.OTEL_TRACES: otel_traces.SCHEMA,
}

# event type -> table
EVENT_TABLES: dict[str, str] = {
    "decision": "decisions",
    "usage": "usage",
    "feedback": "feedback",
    "promotion": "promotions",
}

# A batch on its way to ClickHouse: table -> rows as Arrow columns.
Tables = dict[str, pa.Table]


@dataclass(frozen=True)
class DeadLetter:
    """A stream entry that is not a valid event, and why."""

    stream: str
    entry_id: str
    payload: bytes
    reason: str
    received_at: int  # UTC epoch ms


def _build(schema: pa.Schema, records: Sequence[Any]) -> pa.Table:
    # One Python list per column, each turned into an Arrow array in C++: about three times
    # faster than ``Table.from_pylist`` over per-record dicts (bench/dataflow_throughput.py).
    fields = [vars(record) for record in records]
    columns = [pa.array([f[column.name] for f in fields], type=column.type) for column in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _too_late(data: pa.Table) -> bool:
    if "ts" not in data.column_names or data.num_rows == 0:
        return False
    latest = pc.max(data["ts"].cast(pa.int64())).as_py()
    return latest is not None and int(latest) > MAX_TS_MS


def _row_problem(schema: pa.Schema, record: Any) -> str | None:
    ts = getattr(record, "ts", None)
    if isinstance(ts, int) and ts > MAX_TS_MS:
        return f"ts {ts} is past the last time ClickHouse can store ({MAX_TS_MS})"
    for column in schema:
        try:
            pa.array([getattr(record, column.name)], type=column.type)
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            return f"{column.name} does not fit {column.type}: {exc}"
    return None


def to_arrow(table: str, records: Sequence[Any]) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Columns for ``table`` from records with one attribute per column.

    Returns the Arrow table of the records that fit and, for those that do not,
    ``(index, reason)``. The per-row check only runs when the whole batch fails.
    """
    schema = SCHEMAS[table]
    try:
        data = _build(schema, records)
        if not _too_late(data):
            return data, []
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        pass
    rejected: list[tuple[int, str]] = []
    kept: list[Any] = []
    for index, record in enumerate(records):
        problem = _row_problem(schema, record)
        if problem is None:
            kept.append(record)
        else:
            rejected.append((index, problem))
    return _build(schema, kept), rejected


def dead_letters_to_arrow(letters: Sequence[DeadLetter]) -> pa.Table:
    return _build(SCHEMAS[DEAD_LETTERS], letters)


def _saturate(value: Any, kind: pa.DataType) -> Any:
    """An integer clamped into the column's range: a snapshot is a gauge, and must never stop the flow."""
    if not isinstance(value, int) or isinstance(value, bool) or not pa.types.is_integer(kind):
        return value
    bits = kind.bit_width
    low, high = (
        (0, 2**bits - 1) if pa.types.is_unsigned_integer(kind) else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    return min(max(value, low), high)


def quota_snapshots_to_arrow(etas: Sequence[Eta]) -> pa.Table:
    schema = SCHEMAS[QUOTA_SNAPSHOTS]
    rows = [{**{name: getattr(eta, name) for name in Eta.__slots__}, "as_of": eta.as_of_ms} for eta in etas]
    columns = [pa.array([_saturate(row[f.name], f.type) for row in rows], type=f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def alerts_to_arrow(alerts: Sequence[Alert], trace_url_template: str) -> pa.Table:
    rows = [
        {
            "at": a.at_ms,
            "alert_id": a.alert_id,
            "status": a.status,
            "alertname": a.name,
            "provider": a.provider,
            "model": a.model,
            "objective": a.objective,
            "value": a.value,
            "threshold": a.threshold,
            "started_at": a.started_ms,
            "window_ms": a.window_ms,
            "attempts": a.attempts,
            "trace_id": a.trace_id,
            "decision_id": a.decision_id,
            "trace_url": a.trace_url(trace_url_template),
        }
        for a in alerts
    ]
    return pa.Table.from_pylist(rows, schema=SCHEMAS[ALERTS])


def merge(batches: Iterable[Mapping[str, pa.Table]]) -> Tables:
    """One Arrow table per ClickHouse table out of many batches."""
    parts: dict[str, list[pa.Table]] = {}
    for batch in batches:
        for table, data in batch.items():
            if data.num_rows:
                parts.setdefault(table, []).append(data)
    return {table: pa.concat_tables(datas) if len(datas) > 1 else datas[0] for table, datas in parts.items()}


def write(store: Writer, batches: Iterable[Mapping[str, pa.Table]]) -> dict[str, int]:
    """Insert the batches, one ``insert_arrow`` per table; return rows written per table."""
    written: dict[str, int] = {}
    for table, data in merge(batches).items():
        store.insert_arrow(table, data)
        written[table] = data.num_rows
    return written


class Writer(Protocol):
    """Where Arrow tables go: ``ClickHouseStore`` itself, or the engine that owns it (``EngineWriter``)."""

    def insert_arrow(self, table: str, data: pa.Table) -> None: ...


class SinkStopped(Exception):
    """The engine was asked to stop while ClickHouse was refusing writes; the epoch stays unwritten."""


@dataclass(frozen=True)
class Backoff:
    """Exponential delays between attempts: ``first``, ``first * factor``, ... never above ``cap``."""

    first: float = 0.1
    factor: float = 2.0
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.first * self.factor ** max(0, attempt - 1)))


@dataclass
class SinkStats:
    """What the sinks of this process have done, for ``GET /metrics`` (updated under one lock)."""

    rows: dict[str, int] = field(default_factory=dict)  # table -> rows written
    batches: dict[int, int] = field(default_factory=dict)  # dataflow worker -> batches it wrote
    retries: int = 0  # failed attempts that were retried
    failing_since: float | None = None  # monotonic time of the first failure of the current outage
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def written(self, table: str, rows: int) -> None:
        with self.lock:
            self.rows[table] = self.rows.get(table, 0) + rows
            self.failing_since = None

    def batch_written(self, worker: int) -> None:
        with self.lock:
            self.batches[worker] = self.batches.get(worker, 0) + 1

    def failed(self) -> None:
        with self.lock:
            self.retries += 1
            if self.failing_since is None:
                self.failing_since = clock.monotonic()


def write_durably(
    store: Writer,
    batches: Iterable[Mapping[str, pa.Table]],
    *,
    stop: threading.Event,
    backoff: Backoff = Backoff(),
    stats: SinkStats | None = None,
    stop_on_fatal: bool = False,
) -> dict[str, int]:
    """``write``, retrying each table until ClickHouse takes it: a batch is never dropped.

    A failed insert (ClickHouse down, slow, refusing) is retried after an exponential,
    capped delay, and only the tables not yet written are sent again. The worker waits
    meanwhile, so the dataflow slows down and the events wait in the stream. If the
    engine is asked to stop during an outage, ``SinkStopped`` is raised: the epoch is
    not committed, so its events are read again from the stream after a restart.

    With ``stop_on_fatal`` (the embedded chDB of this process), chDB's fatal-state
    error raises ``ClickHouseFatal`` at once instead: that state never clears, so a
    retry would wait forever. The epoch stays uncommitted, as above.
    """
    pending = merge(batches)
    written: dict[str, int] = {}
    attempt = 0
    while pending:
        table, data = next(iter(pending.items()))
        try:
            store.insert_arrow(table, data)
        except Exception as exc:  # every transport has its own errors; none may lose the batch
            fatal = fatal_message(exc) if stop_on_fatal else None
            if fatal is not None:
                raise ClickHouseFatal(fatal) from exc
            attempt += 1
            if stats is not None:
                stats.failed()
            delay = backoff.delay(attempt)
            level = logging.WARNING if attempt < ALARM_AFTER_ATTEMPTS else logging.ERROR
            log.log(
                level,
                "writing %d rows to %s failed (attempt %d), retrying in %.1fs: %s",
                data.num_rows,
                table,
                attempt,
                delay,
                str(exc).strip()[:300] or type(exc).__name__,
            )
            if stop.wait(delay):
                rows = sum(d.num_rows for d in pending.values())
                raise SinkStopped(
                    f"stopping while ClickHouse refuses writes: {rows} rows of this epoch stay in the"
                    " stream and are written after the restart"
                ) from exc
            continue
        if attempt:
            log.warning("wrote %d rows to %s after %d failed attempts", data.num_rows, table, attempt)
            attempt = 0
        del pending[table]
        written[table] = data.num_rows
        if stats is not None:
            stats.written(table, data.num_rows)
    return written


class _ClickHousePartition(StatelessSinkPartition[Tables]):
    def __init__(
        self,
        store: Writer,
        stop: threading.Event,
        backoff: Backoff,
        stats: SinkStats,
        stop_on_fatal: bool,
        worker: int,
    ) -> None:
        self._worker = worker
        self._store = store
        self._stop = stop
        self._backoff = backoff
        self._stats = stats
        self._stop_on_fatal = stop_on_fatal

    @override
    def write_batch(self, items: list[Tables]) -> None:
        write_durably(
            self._store,
            items,
            stop=self._stop,
            backoff=self._backoff,
            stats=self._stats,
            stop_on_fatal=self._stop_on_fatal,
        )
        self._stats.batch_written(self._worker)


class ClickHouseSink(DynamicSink[Tables]):
    """Write ``{table: Arrow table}`` items to ClickHouse on each worker, retrying until it takes them.

    At-least-once: after a resume the last epoch is written again, and the
    tables' ``ReplacingMergeTree`` keys make the replay invisible under ``FINAL``.
    """

    def __init__(
        self,
        store: Writer,
        stop: threading.Event | None = None,
        backoff: Backoff = Backoff(),
        stats: SinkStats | None = None,
        stop_on_fatal: bool = False,
    ) -> None:
        self._store = store
        self._stop = stop or threading.Event()
        self._backoff = backoff
        self.stats = stats or SinkStats()
        self._stop_on_fatal = stop_on_fatal

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ClickHousePartition:
        return _ClickHousePartition(
            self._store, self._stop, self._backoff, self.stats, self._stop_on_fatal, worker_index
        )
