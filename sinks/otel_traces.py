"""OTLP spans as rows of ``otel_traces``, the OpenTelemetry collector's ClickHouse exporter schema.

``spans_table(payload)`` decodes an OTLP/HTTP protobuf body (``ExportTraceServiceRequest``)
into Arrow columns named and typed as the exporter's ``otel_traces`` (its
``traces_table.sql``), so Grafana's ClickHouse data source reads them as it reads the
collector's: ids in lowercase hex, ``SpanKind`` and ``StatusCode`` as the collector
spells them (``Server``, ``Error``), attributes as ``Map(String, String)`` with every value
turned into a string the way the collector does (numbers in decimal, booleans ``true``/
``false``, arrays and maps as JSON, bytes in base64), ``Duration`` in nanoseconds.

A payload that is not such a request, or a span without a valid trace or span id, is refused
whole with ``SpanPayloadError``, whose message names the span (resource, scope and span
index) and what is wrong with it.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

import orjson
import pyarrow as pa
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

OTEL_TRACES = "otel_traces"

_TS = pa.timestamp("ns", tz="UTC")
_STR = pa.string()
_MAP = pa.map_(pa.string(), pa.string())

# The exporter's columns, in its order (the table's ALIAS columns are computed, never inserted).
SCHEMA = pa.schema(
    [
        ("Timestamp", _TS),
        ("TraceId", _STR),
        ("SpanId", _STR),
        ("ParentSpanId", _STR),
        ("TraceState", _STR),
        ("SpanName", _STR),
        ("SpanKind", _STR),
        ("ServiceName", _STR),
        ("ResourceAttributes", _MAP),
        ("ScopeName", _STR),
        ("ScopeVersion", _STR),
        ("SpanAttributes", _MAP),
        ("Duration", pa.uint64()),
        ("StatusCode", _STR),
        ("StatusMessage", _STR),
        ("Events.Timestamp", pa.list_(_TS)),
        ("Events.Name", pa.list_(_STR)),
        ("Events.Attributes", pa.list_(_MAP)),
        ("Links.TraceId", pa.list_(_STR)),
        ("Links.SpanId", pa.list_(_STR)),
        ("Links.TraceState", pa.list_(_STR)),
        ("Links.Attributes", pa.list_(_MAP)),
    ]
)

# As the collector's pdata prints them (ptrace.SpanKind.String, ptrace.StatusCode.String).
SPAN_KINDS = {
    Span.SPAN_KIND_UNSPECIFIED: "Unspecified",
    Span.SPAN_KIND_INTERNAL: "Internal",
    Span.SPAN_KIND_SERVER: "Server",
    Span.SPAN_KIND_CLIENT: "Client",
    Span.SPAN_KIND_PRODUCER: "Producer",
    Span.SPAN_KIND_CONSUMER: "Consumer",
}
STATUS_CODES = {
    Status.STATUS_CODE_UNSET: "Unset",
    Status.STATUS_CODE_OK: "Ok",
    Status.STATUS_CODE_ERROR: "Error",
}


class SpanPayloadError(ValueError):
    """The payload is not a valid OTLP traces request; the message says where and why."""


def decode_request(payload: bytes) -> ExportTraceServiceRequest:
    """``payload`` as an ``ExportTraceServiceRequest``, or ``SpanPayloadError``."""
    try:
        request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(payload)
    except DecodeError as exc:
        raise SpanPayloadError(
            f"the body is not an OTLP ExportTraceServiceRequest in protobuf ({len(payload)} bytes): {exc}"
        ) from None
    return request


def spans_table(payload: bytes) -> pa.Table:
    """The rows of ``otel_traces`` for every span of an OTLP/HTTP protobuf body."""
    rows = list(_rows(decode_request(payload)))
    columns = [pa.array([row[i] for row in rows], type=field.type) for i, field in enumerate(SCHEMA)]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _rows(request: ExportTraceServiceRequest) -> Iterable[tuple[Any, ...]]:
    for r, resource_spans in enumerate(request.resource_spans):
        resource = attributes(resource_spans.resource.attributes)
        service = resource.get("service.name", "")
        resource_items = list(resource.items())
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope
            for i, span in enumerate(scope_spans.spans):
                where = f"resource_spans[{r}].scope_spans[{s}].spans[{i}]"
                yield (
                    span.start_time_unix_nano,
                    _trace_id(span.trace_id, f"{where}.trace_id"),
                    _span_id(span.span_id, f"{where}.span_id"),
                    _span_id(span.parent_span_id, f"{where}.parent_span_id", optional=True),
                    span.trace_state,
                    span.name,
                    SPAN_KINDS.get(span.kind, "Unspecified"),
                    service,
                    resource_items,
                    scope.name,
                    scope.version,
                    list(attributes(span.attributes).items()),
                    max(0, span.end_time_unix_nano - span.start_time_unix_nano),
                    STATUS_CODES.get(span.status.code, "Unset"),
                    span.status.message,
                    [event.time_unix_nano for event in span.events],
                    [event.name for event in span.events],
                    [list(attributes(event.attributes).items()) for event in span.events],
                    [_trace_id(link.trace_id, f"{where}.links.trace_id") for link in span.links],
                    [_span_id(link.span_id, f"{where}.links.span_id") for link in span.links],
                    [link.trace_state for link in span.links],
                    [list(attributes(link.attributes).items()) for link in span.links],
                )


def _trace_id(raw: bytes, where: str) -> str:
    if len(raw) != 16 or not any(raw):
        raise SpanPayloadError(f"{where}: a trace id is 16 bytes, not all zero; got {len(raw)} bytes")
    return raw.hex()


def _span_id(raw: bytes, where: str, *, optional: bool = False) -> str:
    if optional and not raw:
        return ""
    if len(raw) != 8 or not any(raw):
        raise SpanPayloadError(f"{where}: a span id is 8 bytes, not all zero; got {len(raw)} bytes")
    return raw.hex()


def attributes(pairs: Iterable[KeyValue]) -> dict[str, str]:
    """Attributes as the collector writes them to a ``Map(String, String)``."""
    return {pair.key: as_string(pair.value) for pair in pairs}


def as_string(value: AnyValue) -> str:
    """One attribute value as a string, as the collector's ``pcommon.Value.AsString`` makes it."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind in ("array_value", "kvlist_value"):
        return orjson.dumps(_native(value)).decode()
    native = _native(value)
    if isinstance(native, bool):
        return "true" if native else "false"
    if isinstance(native, float):
        return _float(native)
    return "" if native is None else str(native)


def _native(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_native(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {pair.key: _native(pair.value) for pair in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "double_value" and not math.isfinite(value.double_value):
        return _float(value.double_value)  # JSON has no NaN or infinity
    return getattr(value, kind) if kind else None


def _float(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)
