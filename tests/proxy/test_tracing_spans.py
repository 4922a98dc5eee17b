"""``proxy.tracing``'s spans where a request goes wrong, and in a trace the client did not sample.

The model for a failure is the SDK: a span that an exception escaped from a ``with`` block, on a
``TracerProvider``, is what a failed decision's or admission's span must read like (ids and times aside).
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind

from proxy import tracing
from proxy.recorded_spans import RecordingTracer

RESOURCE = Resource.create({"service.name": tracing.SERVICE_NAME})
REQUEST = {"method": "POST", "path": "/v1/chat/completions"}
UNSAMPLED_TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def recording() -> tuple[RecordingTracer, InMemorySpanExporter]:
    kept = InMemorySpanExporter()
    scope = InstrumentationScope(tracing.TRACER_NAME)
    return RecordingTracer(RESOURCE, scope, [SimpleSpanProcessor(kept)]), kept


def sdk_span_escaped_by(exc: BaseException, name: str, start_time: int) -> ReadableSpan:
    """What the SDK records for a span (``start_span``, ``with``) that ``exc`` escaped."""
    kept = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer(tracing.TRACER_NAME)
    with pytest.raises(type(exc)), tracer.start_span(name, start_time=start_time):
        raise exc
    (span,) = kept.get_finished_spans()
    return span


def failure(span: ReadableSpan) -> tuple[Any, ...]:
    """A failed span's status and its exception event (the stack trace's text aside: it names the caller)."""
    events = [
        (event.name, {k: v for k, v in (event.attributes or {}).items() if k != "exception.stacktrace"})
        for event in span.events
    ]
    return span.status.status_code, span.status.description, events


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as the gateway and the attempt loop catch it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_a_decision_and_an_admission_that_raise_end_their_spans_as_the_sdk_does() -> None:
    tracer, kept = recording()
    server = tracing.start_server_span(tracer, {**REQUEST, "headers": []})
    token = tracing.enter_request(server)
    started = tracing.now_ns()
    refusal = raised(LookupError("no arm fits the request"))
    tracing.route_failed(tracer, started, refusal)
    outage = raised(ConnectionError("redis went away"))
    tracing.record_quota(tracer, started + 1, "openai", "gpt-4o-mini", outage, {})
    tracing.leave_request(token)
    tracing.end_server_span(server, 500)

    route, quota, request = kept.get_finished_spans()
    assert (route.name, quota.name) == ("symphony.route", "symphony.quota.reserve")
    assert route.kind == quota.kind == SpanKind.INTERNAL
    assert route.parent == quota.parent == request.get_span_context()
    assert (route.start_time, quota.start_time) == (started, started + 1)
    assert failure(route) == failure(sdk_span_escaped_by(refusal, "symphony.route", started))
    assert failure(quota) == failure(sdk_span_escaped_by(outage, "symphony.quota.reserve", started))
    assert dict(quota.attributes or {}) == {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "symphony.quota.outcome": "error",
    }
    assert request.attributes is not None and request.attributes["error.type"] == "500"


class Everything(SpanProcessor):
    """Keeps every span it is handed: the SDK's processors pass over unsampled ones themselves."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def test_a_trace_the_client_did_not_sample_records_nothing_and_passes_its_ids_on() -> None:
    kept = Everything()
    tracer = RecordingTracer(RESOURCE, InstrumentationScope(tracing.TRACER_NAME), [kept])
    server = tracing.start_server_span(
        tracer, {**REQUEST, "headers": [(b"traceparent", UNSAMPLED_TRACEPARENT)]}
    )
    token = tracing.enter_request(server)
    tracing.record_route(
        tracer,
        tracing.now_ns(),
        decision_id="d-1",
        policy="champion",
        policy_version="v1",
        chosen="openai/gpt-4o-mini",
        propensity=1.0,
        candidates=["openai/gpt-4o-mini"],
    )
    tracing.record_quota(tracer, tracing.now_ns(), "openai", "gpt-4o-mini", "granted", {"tokens": 1.0})
    attempt = tracing.start_attempt(tracer, "openai", "gpt-4o-mini", 1)
    headers = tracing.trace_headers(attempt)
    tracing.annotate_request(
        server,
        decision_id="d-1",
        policy_version="v1",
        requested_model="auto",
        overrides={},
        quota_remaining={"tokens": 1.0},
        served=("openai", "gpt-4o-mini"),
    )
    tracing.leave_request(token)
    tracing.end_server_span(server, 200)

    assert kept.spans == []
    trace_id, span_id, *_ = attempt.get_span_context()
    assert headers == {"traceparent": f"00-0af7651916cd43dd8448eb211c80319c-{span_id:016x}-00"}
    assert f"{trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert tracing.span_ids(server)[0] == "0af7651916cd43dd8448eb211c80319c"
