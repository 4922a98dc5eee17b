"""Events and dead letters into ClickHouse: Arrow columns in, one ``insert_arrow`` per table per batch.

The Arrow schemas here mirror the tables of ``sinks.clickhouse_schema``; a test
keeps the two in step. ``to_arrow`` builds columns, not rows; a value ClickHouse
cannot hold (an integer too large for its column, a time past 2299) is reported
per row so the caller can dead-letter that event and keep the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from typing_extensions import override

from sinks.clickhouse_store import ClickHouseStore
from symphony.quota_eta import Eta

TIMESTAMP = pa.timestamp("ms", tz="UTC")
STRING = pa.string()
FLOAT = pa.float64()
FLOAT_MAP = pa.map_(pa.string(), pa.float64())
STRING_MAP = pa.map_(pa.string(), pa.string())

# DateTime64(3) holds times up to 2299-12-31 23:59:59.999 UTC.
MAX_TS_MS = 10_413_791_999_999

DEAD_LETTERS = "dead_letters"
QUOTA_SNAPSHOTS = "quota_snapshots"

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
}

# event type -> table
EVENT_TABLES: dict[str, str] = {"decision": "decisions", "usage": "usage", "feedback": "feedback"}

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
    # Arrow turns the records' attribute dicts into columns in C++, faster than a list per column.
    return pa.Table.from_pylist([vars(r) for r in records], schema=schema)


def _too_late(data: pa.Table) -> bool:
    if "ts" not in data.column_names or data.num_rows == 0:
        return False
    latest = pc.max(data["ts"].cast(pa.int64())).as_py()
    return latest is not None and int(latest) > MAX_TS_MS


def _row_problem(schema: pa.Schema, record: Any) -> str | None:
    ts = getattr(record, "ts", None)
    if isinstance(ts, int) and ts > MAX_TS_MS:
        return f"ts {ts} is past the last time ClickHouse can store ({MAX_TS_MS})"
    for field in schema:
        try:
            pa.array([getattr(record, field.name)], type=field.type)
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            return f"{field.name} does not fit {field.type}: {exc}"
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


def quota_snapshots_to_arrow(etas: Sequence[Eta]) -> pa.Table:
    rows = [{**{name: getattr(eta, name) for name in Eta.__slots__}, "as_of": eta.as_of_ms} for eta in etas]
    return pa.Table.from_pylist(rows, schema=SCHEMAS[QUOTA_SNAPSHOTS])


def merge(batches: Iterable[Mapping[str, pa.Table]]) -> Tables:
    """One Arrow table per ClickHouse table out of many batches."""
    parts: dict[str, list[pa.Table]] = {}
    for batch in batches:
        for table, data in batch.items():
            if data.num_rows:
                parts.setdefault(table, []).append(data)
    return {table: pa.concat_tables(datas) if len(datas) > 1 else datas[0] for table, datas in parts.items()}


def write(store: ClickHouseStore, batches: Iterable[Mapping[str, pa.Table]]) -> dict[str, int]:
    """Insert the batches, one ``insert_arrow`` per table; return rows written per table."""
    written: dict[str, int] = {}
    for table, data in merge(batches).items():
        store.insert_arrow(table, data)
        written[table] = data.num_rows
    return written


class _ClickHousePartition(StatelessSinkPartition[Tables]):
    def __init__(self, store: ClickHouseStore) -> None:
        self._store = store

    @override
    def write_batch(self, items: list[Tables]) -> None:
        write(self._store, items)


class ClickHouseSink(DynamicSink[Tables]):
    """Write ``{table: Arrow table}`` items to ClickHouse on each worker.

    At-least-once: after a resume the last epoch is written again, and the
    tables' ``ReplacingMergeTree`` keys make the replay invisible under ``FINAL``.
    """

    def __init__(self, store: ClickHouseStore) -> None:
        self._store = store

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ClickHousePartition:
        return _ClickHousePartition(self._store)
