"""The hand-written OTLP encoding means exactly what the SDK's own encoder says, for every kind of span."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from proxy.otlp_encoding import encode_request, encode_scope_request, encode_span


def finished_spans() -> list[ReadableSpan]:
    """Spans with every field the encoder writes: kinds, attribute types, events, links, status,
    a remote parent with a trace state, and two tracers (scopes), one with a version."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "symphony-proxy", "replica": 3}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("symphony.proxy")
    other = provider.get_tracer("other", "1.2.3")
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "x"), ("k", "v")]),
    )
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    with tracer.start_as_current_span(
        "POST /v1/chat/completions", context=parent, kind=SpanKind.SERVER
    ) as root:
        root.set_attributes(
            {
                "symphony.decision_id": "d-123",
                "gen_ai.usage.input_tokens": 17,
                "negative": -5,
                "big": 2**62,
                "ratio": 0.25,
                "flag": True,
                "off": False,
                "models": ["a", "b"],
                "counts": [1, -2, 3],
                "weights": [0.5, 1.5],
                "empty": "",
            }
        )
        root.add_event("first chunk", {"at": 12})
        with tracer.start_as_current_span("symphony.route"):
            pass
        with other.start_as_current_span(
            "chat gpt-4o", kind=SpanKind.CLIENT, links=[Link(remote, {"why": "retry"})]
        ) as call:
            call.set_status(Status(StatusCode.ERROR, "upstream 503"))
            call.set_attribute("error.type", "5xx")
        with tracer.start_as_current_span("ok", kind=SpanKind.PRODUCER) as ok:
            ok.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("a root of its own", kind=SpanKind.CONSUMER):
        pass
    return list(memory.get_finished_spans())


def test_the_bytes_parse_to_what_the_sdk_encoder_builds() -> None:
    spans = finished_spans()
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert ours == encode_spans(spans)
    assert len(ours.resource_spans[0].scope_spans) == 2  # one per tracer


def test_spans_encoded_one_at_a_time_make_the_request_the_sdk_encoder_builds() -> None:
    """The proxy encodes each span as it ends and puts a batch's bytes together later."""
    spans = finished_spans()
    first = spans[0]
    scope_mates = [span for span in spans if span.instrumentation_scope == first.instrumentation_scope]
    assert len(scope_mates) > 2
    encoded = [encode_span(span) for span in scope_mates]
    request = encode_scope_request(first.resource, first.instrumentation_scope, encoded)
    assert ExportTraceServiceRequest.FromString(request) == encode_spans(scope_mates)
    assert encode_scope_request(first.resource, first.instrumentation_scope, []) == b""


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_request([]) == b"" == encode_spans([]).SerializeToString()


def test_repeated_attributes_keep_their_types() -> None:
    """Equal in Python, not in OTLP: True, 1 and 1.0 (and a second sight of each) stay what they are."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "symphony-proxy"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("symphony.proxy")
    for value in (True, 1, 1.0, "1", True, 1, 1.0, "1"):
        with tracer.start_as_current_span("s", attributes={"a": value}):
            pass
    spans = list(memory.get_finished_spans())
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert ours == encode_spans(spans)
    kinds = [s.attributes[0].value.WhichOneof("value") for s in ours.resource_spans[0].scope_spans[0].spans]
    assert kinds == ["bool_value", "int_value", "double_value", "string_value"] * 2


def test_kept_pairs_stay_with_their_key_and_field() -> None:
    """A pair's bytes are kept for the next span with the same attribute: never given to another key
    with the same value, to a list that differs, nor to an event's attributes (another field)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "symphony-proxy"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("symphony.proxy")
    values = (["a", "b"], ["a"], ["b"], "a", ["a", "b"], ["a"], ["b"], "a")
    for value in values:
        for key in ("x", "y"):
            with tracer.start_as_current_span("s", attributes={key: value}) as span:
                span.add_event("e", {key: value})
    spans = list(memory.get_finished_spans())
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert ours == encode_spans(spans)
    keys = [s.attributes[0].key for s in ours.resource_spans[0].scope_spans[0].spans]
    assert keys == ["x", "y"] * len(values)
