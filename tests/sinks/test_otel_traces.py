"""OTLP spans into ``otel_traces`` (the collector's ClickHouse exporter schema), in real chDB.

The spans are made by the real OpenTelemetry SDK and encoded by the real OTLP encoder, as
the proxy's exporter sends them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode, format_span_id, format_trace_id

from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore
from sinks.otel_traces import OTEL_TRACES, SpanPayloadError, spans_table


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore.connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        migrate(store)
        yield store
    finally:
        store.close()


def make_spans() -> list[ReadableSpan]:
    """A server span with a child client span (an event, an error) and an internal one (a link)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "symphony-proxy"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("symphony.proxy", "3.0.0")
    with tracer.start_as_current_span("POST /v1/chat/completions", kind=SpanKind.SERVER) as server:
        server.set_attributes(
            {
                "symphony.decision_id": "d-1",
                "symphony.propensity": 0.25,
                "gen_ai.usage.input_tokens": 12,
                "symphony.stream": True,
                "symphony.candidates": ["openai/gpt-4o", "anthropic/claude"],
            }
        )
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as attempt:
            attempt.add_event("first chunk", {"gen_ai.response.time_to_first_chunk": 0.5})
            attempt.set_status(StatusCode.ERROR, "429 from the provider")
        with tracer.start_as_current_span("symphony.route", links=[Link(server.get_span_context())]):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def test_spans_land_in_the_exporters_columns_with_ids_kinds_attributes_events_and_links(
    store: ClickHouseStore,
) -> None:
    spans = make_spans()
    payload = encode_spans(spans).SerializeToString()
    store.insert_arrow(OTEL_TRACES, spans_table(payload))
    store.insert_arrow(OTEL_TRACES, spans_table(payload))  # an export sent twice
    rows = store.query(
        "SELECT SpanName, TraceId, SpanId, ParentSpanId, SpanKind, ServiceName, ResourceAttributes,"
        " ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage, Events.Name,"
        " Events.Attributes, Links.SpanId, toUnixTimestamp64Nano(Timestamp)"
        " FROM otel_traces FINAL ORDER BY SpanName"
    )
    by_name = {row[0]: dict(zip(rows.columns, row, strict=True)) for row in rows.rows}
    assert len(rows.rows) == 3  # once each, though sent twice
    by_span = {s.name: s for s in spans}
    server, attempt, route = (
        by_name[n] for n in ("POST /v1/chat/completions", "chat gpt-4o", "symphony.route")
    )
    sdk_server = by_span["POST /v1/chat/completions"]
    assert sdk_server.context is not None
    assert server["TraceId"] == format_trace_id(sdk_server.context.trace_id)
    assert server["SpanId"] == format_span_id(sdk_server.context.span_id)
    assert server["ParentSpanId"] == ""
    assert attempt["ParentSpanId"] == route["ParentSpanId"] == server["SpanId"]
    assert attempt["TraceId"] == route["TraceId"] == server["TraceId"]
    assert (server["SpanKind"], attempt["SpanKind"], route["SpanKind"]) == ("Server", "Client", "Internal")
    assert server["ServiceName"] == "symphony-proxy"
    assert server["ResourceAttributes"]["service.name"] == "symphony-proxy"
    assert (server["ScopeName"], server["ScopeVersion"]) == ("symphony.proxy", "3.0.0")
    assert server["SpanAttributes"] == {
        "symphony.decision_id": "d-1",
        "symphony.propensity": "0.25",
        "gen_ai.usage.input_tokens": "12",
        "symphony.stream": "true",
        "symphony.candidates": '["openai/gpt-4o","anthropic/claude"]',
    }
    assert sdk_server.end_time is not None and sdk_server.start_time is not None
    assert server["Duration"] == sdk_server.end_time - sdk_server.start_time
    assert server["toUnixTimestamp64Nano(Timestamp)"] == sdk_server.start_time
    assert (attempt["StatusCode"], attempt["StatusMessage"]) == ("Error", "429 from the provider")
    assert server["StatusCode"] == "Unset"
    assert attempt["Events.Name"] == ["first chunk"]
    assert attempt["Events.Attributes"] == [{"gen_ai.response.time_to_first_chunk": "0.5"}]
    assert route["Links.SpanId"] == [server["SpanId"]]
    # The collector's trace-id lookup table (Grafana's "trace timestamp table") follows.
    lookup = store.query(f"SELECT count() FROM otel_traces_trace_id_ts WHERE TraceId = '{server['TraceId']}'")
    assert lookup.rows[0][0] >= 1


def test_a_payload_that_is_not_a_request_or_has_bad_ids_is_refused_with_where_and_why() -> None:
    with pytest.raises(SpanPayloadError, match="not an OTLP ExportTraceServiceRequest in protobuf"):
        spans_table(b"\xff\xff\xff not protobuf")
    request = encode_spans(make_spans())
    request.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x01" * 8
    with pytest.raises(
        SpanPayloadError, match=r"resource_spans\[0\]\.scope_spans\[0\]\.spans\[1\]\.trace_id"
    ):
        spans_table(request.SerializeToString())
    request = encode_spans(make_spans())
    request.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x00" * 8
    with pytest.raises(SpanPayloadError, match="a span id is 8 bytes, not all zero"):
        spans_table(request.SerializeToString())
    assert spans_table(b"").num_rows == 0  # an empty request is a valid one
