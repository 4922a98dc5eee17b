"""Recorded spans behave as the SDK's do, field for field, and both OTLP encoders agree on them.

The model is the SDK itself: the same script runs on an SDK ``TracerProvider`` and on a
``RecordingTracer``, and what each hands its span processor must read the same, ids and times
aside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from proxy.otlp_encoding import encode_request
from proxy.recorded_spans import RecordingTracer

RESOURCE = Resource.create({"service.name": "symphony-proxy"})
SAMPLED_PARENT = SpanContext(
    0x0AF7651916CD43DD8448EB211C80319C,
    0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(1),
    trace_state=TraceState([("vendor", "x")]),
)
UNSAMPLED_PARENT = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(0))


def script(tracer: trace.Tracer) -> list[str]:
    """What the proxy does with spans, and the edges; returns the traceparents it would send on."""
    sent = []
    client = trace.set_span_in_context(trace.NonRecordingSpan(SAMPLED_PARENT))
    server = tracer.start_span("POST /v1/chat/completions", context=client, kind=SpanKind.SERVER)
    token = otel_context.attach(trace.set_span_in_context(server))
    try:
        with tracer.start_span("symphony.route") as route:
            route.set_attributes({"symphony.candidates": ["a/b", "c/d"], "symphony.propensity": 0.25})
        attempt = tracer.start_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={"symphony.attempt": 1})
        sent.append(f"{attempt.get_span_context().trace_id:032x}")
        attempt.record_exception(ValueError("upstream 503"))
        attempt.set_status(StatusCode.ERROR)
        attempt.set_attribute("error.type", "5xx")
        attempt.end()
        attempt.end()  # a second end changes nothing
        with pytest.raises(RuntimeError), tracer.start_span("raises"):
            raise RuntimeError("boom")
        quota = tracer.start_span("symphony.quota.reserve")
        quota.add_event("granted", {"left": 3})
        quota.set_status(Status(StatusCode.OK))
        quota.end()
    finally:
        otel_context.detach(token)
    server.set_attribute("http.response.status_code", 200)
    server.end()
    unsampled = tracer.start_span(
        "not sampled", context=trace.set_span_in_context(trace.NonRecordingSpan(UNSAMPLED_PARENT))
    )
    sent.append(f"{unsampled.get_span_context().trace_id:032x} recording={unsampled.is_recording()}")
    unsampled.end()
    with tracer.start_span("a root of its own"):
        pass
    return sent


def ids(span: ReadableSpan) -> SpanContext:
    found = span.get_span_context()
    assert found is not None  # an ended span has its context
    return found


def readout(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    """Every field but ids and times; parents as names (or the remote parent's id)."""
    names = {ids(span).span_id: span.name for span in spans}
    out = []
    for span in spans:
        parent = span.parent
        events = [
            (event.name, {k: v for k, v in (event.attributes or {}).items() if k != "exception.stacktrace"})
            for event in span.events
        ]
        out.append(
            {
                "name": span.name,
                "kind": span.kind,
                "parent": None if parent is None else names.get(parent.span_id, hex(parent.span_id)),
                "remote_parent": parent is not None and parent.is_remote,
                "same_trace": parent is None or parent.trace_id == ids(span).trace_id,
                "trace_state": dict(ids(span).trace_state),
                # The SDK keeps a list as a tuple; both are an OTLP array.
                "attributes": {
                    k: tuple(v) if isinstance(v, list) else v for k, v in (span.attributes or {}).items()
                },
                "events": events,
                "status": (span.status.status_code, span.status.description),
            }
        )
    return out


def run_sdk() -> tuple[list[ReadableSpan], list[str]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    sent = script(provider.get_tracer("symphony.proxy"))
    return list(memory.get_finished_spans()), sent


def run_recorded(
    processor_of: Callable[[InMemorySpanExporter], Any] = SimpleSpanProcessor,
) -> tuple[list[ReadableSpan], list[str]]:
    memory = InMemorySpanExporter()
    tracer = RecordingTracer(RESOURCE, InstrumentationScope("symphony.proxy"), [processor_of(memory)])
    sent = script(tracer)
    return list(memory.get_finished_spans()), sent


def test_recorded_spans_read_as_the_sdks_do() -> None:
    sdk, sdk_sent = run_sdk()
    recorded, recorded_sent = run_recorded()
    assert readout(recorded) == readout(sdk)
    assert [span.name for span in recorded] == [
        "symphony.route",
        "chat gpt-4o",
        "raises",
        "symphony.quota.reserve",
        "POST /v1/chat/completions",
        "a root of its own",
    ]
    # The unsampled parent's trace goes on, recorded or not, in both.
    assert recorded_sent[1] == sdk_sent[1] == f"{UNSAMPLED_PARENT.trace_id:032x} recording=False"
    assert recorded_sent[0] == sdk_sent[0] == f"{SAMPLED_PARENT.trace_id:032x}"


def test_recorded_spans_have_fresh_valid_ids() -> None:
    recorded, _ = run_recorded()
    span_ids = [ids(span).span_id for span in recorded]
    assert len(set(span_ids)) == len(span_ids) and all(0 < i < 2**64 for i in span_ids)
    root = ids(recorded[-1])
    assert root.is_valid and root.trace_id != SAMPLED_PARENT.trace_id and root.trace_flags.sampled


def test_both_encoders_agree_on_recorded_spans() -> None:
    recorded, _ = run_recorded()
    ours = ExportTraceServiceRequest.FromString(encode_request(recorded))
    assert ours == encode_spans(recorded)
    assert [s.name for s in ours.resource_spans[0].scope_spans[0].spans] == [s.name for s in recorded]
