"""The hand-written OTLP encoding means exactly what the SDK's own encoder says, for every kind of span."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from proxy import tracing
from proxy.otlp_encoding import encode_request, encode_scope_request, encode_span
from proxy.recorded_spans import RecordedSpan, RecordingTracer
from proxy.span_queue import SpanEncoder
from symphony.events import AttemptStatus, Usage


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
    """Equal in Python, not in OTLP: True, 1 and 1.0, (True,) and (1,) (and a second sight of each) stay
    what they are."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "symphony-proxy"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("symphony.proxy")
    for value in (("1",), (True,), (1,), True, 1, 1.0, "1") * 2:
        with tracer.start_as_current_span("s", attributes={"a": value}):
            pass
    spans = list(memory.get_finished_spans())
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert ours == encode_spans(spans)
    kinds = [s.attributes[0].value.WhichOneof("value") for s in ours.resource_spans[0].scope_spans[0].spans]
    assert kinds == (["array_value"] * 3 + ["bool_value", "int_value", "double_value", "string_value"]) * 2
    items = [s.attributes[0].value.array_value.values for s in ours.resource_spans[0].scope_spans[0].spans]
    firsts = [item[0].WhichOneof("value") for item in items if item]
    assert firsts == ["string_value", "bool_value", "int_value"] * 2


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


def proxy_spans() -> tuple[list[ReadableSpan], list[dict[str, str]]]:
    """Spans as the proxy makes them (``proxy.tracing``'s helpers on a ``RecordingTracer``), which the
    encoder writes in one join (a client's trace, with its trace state, field by field): new traces and
    a client's, a failed attempt and a streamed one; and the headers each attempt sends upstream."""
    kept = InMemorySpanExporter()
    tracer = RecordingTracer(
        Resource.create({"service.name": tracing.SERVICE_NAME}),
        InstrumentationScope(tracing.TRACER_NAME),
        [SimpleSpanProcessor(kept)],
    )
    client = [
        (b"host", b"symphony"),
        (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        (b"tracestate", b"vendor=x"),
    ]
    sent: list[dict[str, str]] = []
    for number, headers in enumerate(([], client, [])):
        server = tracing.start_server_span(
            tracer, {"method": "POST", "path": "/v1/chat/completions", "headers": headers}
        )
        token = tracing.enter_request(server)
        tracing.record_route(
            tracer,
            tracing.now_ns(),
            decision_id=f"d-{number}",
            policy="champion",
            policy_version="v12",
            chosen="openai/gpt-4o-mini",
            propensity=0.5 + number,
            candidates=["openai/gpt-4o-mini", "anthropic/claude"][: number + 1],
        )
        # A snapshot of two-byte lengths, and one past the varint table (3,000 bytes).
        long_name = "x" * (300 if number < 2 else 3000)
        remaining = {"openai/gpt-4o-mini tokens per 1m": 1e5 - number, long_name: float(number)}
        tracing.record_quota(tracer, tracing.now_ns(), "openai", "gpt-4o-mini", "granted", remaining)
        for attempt_number, status in enumerate(("5xx", "ok"), start=1):
            attempt = tracing.start_attempt(tracer, "openai", "gpt-4o-mini", attempt_number)
            sent.append(tracing.trace_headers(attempt))
            tracing.end_attempt(attempt, usage(status, number), stream=number == 1)
        tracing.annotate_request(
            server,
            decision_id=f"d-{number}",
            policy_version="v12",
            requested_model="auto",
            overrides={"provider": "openai"},
            quota_remaining=remaining,
            served=("openai", "gpt-4o-mini"),
        )
        tracing.leave_request(token)
        tracing.end_server_span(server, 200 if number else 502)
    return list(kept.get_finished_spans()), sent


def usage(status: AttemptStatus, number: int) -> Usage:
    return Usage(
        event_id=f"01KBUSAGE{number:017d}",
        ts=1_764_633_600_000,
        decision_id=f"d-{number}",
        app="dev",
        provider="openai",
        model="gpt-4o-mini",
        attempt=1,
        status=status,
        input_tokens=12 + number,
        output_tokens=5,
        latency_ms=42.5,
        ttfb_ms=12.5,
        cost_usd=0.00001,
    )


def test_the_proxys_spans_encode_as_the_sdk_encoder_says() -> None:
    spans, sent = proxy_spans()
    assert len(spans) == 15
    assert sum(span.parent is None for span in spans) == 2  # two new traces, one the client's
    client_trace = [span for span in spans if span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C]
    assert len(client_trace) == 5
    assert all(span.context.trace_state.to_header() == "vendor=x" for span in client_trace)
    assert [headers.get("tracestate") for headers in sent] == [None, None, "vendor=x", "vendor=x", None, None]
    encoded = [encode_span(span) for span in spans]
    request = encode_scope_request(spans[0].resource, spans[0].instrumentation_scope, encoded)
    assert ExportTraceServiceRequest.FromString(request) == encode_spans(spans)
    again = [encode_span(span) for span in spans]  # now from the kept pairs
    assert again == encoded


class _KeptBytes:
    """A destination's queue that keeps the encoded spans it is given."""

    def __init__(self) -> None:
        self.spans: list[bytes] = []

    def put(self, encoded_span: bytes) -> None:
        self.spans.append(encoded_span)


def finished_children(tracer: RecordingTracer) -> None:
    """A request's route and quota spans (granted, then refused), twice: the second from the kept groups."""
    request = {"method": "POST", "path": "/v1/chat/completions", "headers": []}
    server = tracing.start_server_span(tracer, request)
    token = tracing.enter_request(server)
    for number in range(2):
        started = tracing.now_ns()
        tracing.record_route(
            tracer,
            started,
            decision_id=f"d-{number}",
            policy="champion",
            policy_version="v12",
            chosen="openai/gpt-4o-mini",
            propensity=0.25 + number,
            candidates=["openai/gpt-4o-mini", "anthropic/claude"],
        )
        remaining = {"openai/gpt-4o-mini tokens per 1m": 1e5 - number}
        tracing.record_quota(tracer, started, "openai", "gpt-4o-mini", "granted", remaining)
        tracing.record_quota(tracer, started, "openai", "gpt-4o-mini", "QuotaExhausted", {})
    tracing.leave_request(token)


def test_spans_written_from_their_fields_encode_as_the_same_spans_made() -> None:
    """The proxy's tracer writes a route or quota span straight to its bytes (``ProxyTracer``): they
    say what the SDK's encoder says of the same spans made by a ``RecordingTracer``, ids and times aside."""
    resource = Resource.create({"service.name": tracing.SERVICE_NAME})
    scope = InstrumentationScope(tracing.TRACER_NAME)
    queued = _KeptBytes()
    finished_children(tracing.ProxyTracer(resource, scope, SpanEncoder([queued])))  # type: ignore[list-item]
    kept = InMemorySpanExporter()
    finished_children(RecordingTracer(resource, scope, [SimpleSpanProcessor(kept)]))
    made = list(kept.get_finished_spans())
    written = ExportTraceServiceRequest.FromString(encode_scope_request(resource, scope, queued.spans))
    assert len(made) == len(queued.spans) == 6
    for span, ids in zip(made, written.resource_spans[0].scope_spans[0].spans, strict=True):
        assert isinstance(span, RecordedSpan)
        span.context = SpanContext(
            int.from_bytes(ids.trace_id), int.from_bytes(ids.span_id), False, TraceFlags(1)
        )
        span.parent = SpanContext(int.from_bytes(ids.trace_id), int.from_bytes(ids.parent_span_id), False)
        span.start_time, span.end_time = ids.start_time_unix_nano, ids.end_time_unix_nano
    assert written == encode_spans(made)
