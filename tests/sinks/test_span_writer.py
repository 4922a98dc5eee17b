"""The span writer on real chDB: bounded, and retried while ClickHouse refuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore
from sinks.otel_traces import spans_table
from sinks.span_writer import SpanWriter
from tests.sinks.test_otel_traces import make_spans
from tests.waiting import wait_until


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore.connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        migrate(store)
        yield store
    finally:
        store.close()


def count(store: ClickHouseStore) -> int:
    return int(store.query("SELECT count() FROM otel_traces").rows[0][0])


def test_a_full_buffer_refuses_and_a_refusing_clickhouse_is_retried_until_it_takes_the_spans(
    store: ClickHouseStore,
) -> None:
    # Three requests of 3 spans each, every span its own (the same span twice is one row).
    first, second, third = (spans_table(encode_spans(make_spans()).SerializeToString()) for _ in range(3))
    handle = store.open_writer()
    writer = SpanWriter(handle, max_rows=7, flush_rows=100, interval_s=0.1)
    store.command("RENAME TABLE otel_traces TO otel_traces_away")  # ClickHouse refuses every insert
    writer.start()
    try:
        assert writer.offer(first) and writer.offer(second)
        assert not writer.offer(third)  # 9 > 7: refused whole, nothing taken
        wait_until(lambda: writer.stats.failures >= 2, 15.0)
        assert writer.stats.buffered == 6 and writer.stats.refused == 3
        store.command("RENAME TABLE otel_traces_away TO otel_traces")
        wait_until(lambda: writer.stats.written == 6, 15.0)
        assert count(store) == 6 and writer.stats.buffered == 0
        assert writer.offer(third)  # room again
    finally:
        writer.stop()
        handle.close()
    assert count(store) == 9 and writer.stats.dropped == 0


def test_spans_left_when_it_stops_while_clickhouse_refuses_are_counted_as_dropped(
    store: ClickHouseStore,
) -> None:
    rows = spans_table(encode_spans(make_spans()).SerializeToString())
    handle = store.open_writer()
    writer = SpanWriter(handle, interval_s=0.1)
    store.command("RENAME TABLE otel_traces TO otel_traces_away")
    writer.start()
    try:
        assert writer.offer(rows)
        wait_until(lambda: writer.stats.failures >= 1, 15.0)
    finally:
        writer.stop()
        handle.close()
    assert writer.stats.dropped == 3 and writer.stats.written == 0
    assert not writer.offer(rows)  # stopped: takes nothing more
