"""The proxy's spans (OpenTelemetry), exported over OTLP/HTTP to the control plane and to Tempo.

Destinations (``Tracing.from_settings``), each with its own batch processor, queue and counts:

- ``control_plane``: the engine's ``POST /v1/traces`` (``Settings.engine_traces_url``), which
  lands them in ClickHouse ``otel_traces``; when the proxy holds ``SPANS_TOKEN``, the token
  it sends, which may post spans and nothing else (`symphony up` always makes one);
- ``tempo``: ``TEMPO_ENDPOINT``, when set. The control plane keeps getting them too: alerts'
  trace links, ``trace-coverage`` and analysts' SQL read ClickHouse, Tempo is for Grafana.

Tracing is on when there is a destination and off otherwise. Off, nothing in this module
runs per request: ``proxy.request_observer`` opens no server span and the gateway and the attempt
loop hold no tracer (each checks ``None`` once). On, one trace per proxied request:

- ``POST <path>`` (SERVER, resource ``service.name=symphony-proxy``): the inbound request,
  the child of the client's W3C ``traceparent`` when it sent one; it ends once the response,
  a stream included, is sent. The gateway adds the decision (``symphony.decision_id``,
  ``symphony.policy_version``, ``symphony.overrides``, ``symphony.quota_remaining``) and the
  GenAI request (``gen_ai.operation.name``, ``gen_ai.request.model``, the serving provider and
  model), and logs its trace and span ids in the ``Decision`` event;
- ``symphony.route`` (INTERNAL): the routing decision;
- ``symphony.quota.reserve`` (INTERNAL): one per admission by the quota gate;
- ``chat <model>`` (CLIENT): one per provider attempt, with the OpenTelemetry GenAI attributes
  (``gen_ai.*``, ``error.type`` on a failure, ``gen_ai.response.time_to_first_chunk`` for a
  stream); its ``traceparent`` goes on the upstream request; a streamed attempt's ends with
  the stream.

Map-valued attributes (quota snapshot, overrides) are JSON strings: span attributes hold
scalars and lists only.

Export never blocks a request: a span is encoded as it ends (``proxy.otlp_encoding``, a few
microseconds; the route and quota spans, made once their work is done, are written from their fields
without a span object: ``ProxyTracer``) and its bytes go to each destination's bounded
``SpanQueue``, whose own thread puts them together and sends them in batches (``proxy.span_queue``
says why bytes and not spans). When a back end is down, its spans are dropped (a full queue, a
batch whose export failed, what is left at shutdown) and counted per destination
(``symphony_spans_dropped_total{destination=…}`` on ``/metrics``); the other goes on.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any, Final

import orjson
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Span, SpanContext, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import Scope

from proxy.otlp_encoding import KeptAttributes, encode_attributes, encode_fields, encode_scope_request
from proxy.recorded_spans import NO_STATE, GroupValues, KeptGroup, RecordingTracer, new_span_id
from proxy.span_queue import SpanEncoder, SpanQueue, SpanSender
from symphony.events import AttemptStatus, Usage
from symphony.settings import SPAN_EXPORT_DELAY_MS, Settings

log = logging.getLogger(__name__)

SERVICE_NAME: Final = "symphony-proxy"
TRACER_NAME: Final = "symphony.proxy"
TRACES_PATH: Final = "/v1/traces"
# The inbound APIs that route a request; /health, /metrics, /v1/models and feedback get no span.
TRACED_PATHS: Final = frozenset({"/v1/chat/completions", "/v1/messages", "/v1/route/execute"})
# Room for about 4 s of spans at 500 req/s (4 to 5 spans each) while an export is slow.
MAX_QUEUE_SPANS: Final = 8192
# An export every OTEL_BSP_SCHEDULE_DELAY (5 s by default) up to 2048 spans, about 100 req/s; every
# 2048 spans above that: each POST costs the exporter's thread ~2 ms (requests).
MAX_BATCH_SPANS: Final = 2048
# An export (retries included) gives up after this, so a dead back end costs a batch, not the queue.
EXPORT_TIMEOUT_S: Final = 3.0
SHUTDOWN_TIMEOUT_S: Final = 4.0

_PROPAGATOR: Final = TraceContextTextMapPropagator()
# The request's SERVER span while its request runs, the parent of the spans the gateway and the attempt
# loop start. A ContextVar of the proxy's own rather than OpenTelemetry's current context: attaching a
# span there copies a Context, and each child's lookup goes through four calls, together a tenth of
# tracing's cost to the event loop (bench/tracing_instructions.py). So ``trace.get_current_span()``
# does not see the proxy's spans; nothing in the proxy asks it.
# It holds the span and its context, so that starting a child makes no call to find its parent.
_REQUEST_SPAN: Final[ContextVar[tuple[Span, SpanContext] | tuple[None, None]]] = ContextVar(
    "symphony_request_span", default=(None, None)
)


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: ``endpoint`` as given if it names ``/v1/traces``, else that path added."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


class _OTLPSender(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (session, retries, gzip, timeouts) sending the batches that
    ``proxy.otlp_encoding`` wrote: its ``export`` takes span objects and encodes them through
    message objects, so ``send`` reaches its HTTP client (``_client``), which has no public hook
    for the payload; ``tests/proxy/test_tracing.py`` decodes what it sends and fails if that changes.
    """

    def send(self, payload: bytes) -> bool:
        return not self._shutdown and bool(self._client.export(payload).success)


def tracing_on(settings: Settings) -> bool:
    """Whether the proxy has somewhere to send spans: the control plane (a spans token) or Tempo."""
    return settings.spans_token is not None or bool(settings.tempo_endpoint)


class ProxyTracer(RecordingTracer):
    """The proxy's tracer: a span whose work is done (the route, an admission) is written straight to its
    bytes and queued, with no span object, no attribute dict, and one lookup for the attributes that repeat
    together (``KeptAttributes``). In a tight loop a route span took 3.5 µs made, ended and encoded, 2.4
    written; under callgrind, tracing's instructions on the event loop went from +288k to +270k a request.
    Where the parent has a trace state (a client's), or there is none, the span is made as
    ``RecordingTracer`` makes it."""

    def __init__(self, resource: Resource, scope: InstrumentationScope, encoder: SpanEncoder) -> None:
        super().__init__(resource, scope, [encoder])
        self._put = encoder.put

    def record_finished(
        self,
        name: str,
        kind: SpanKind,
        parent: SpanContext | None,
        start_time: int,
        group: KeptGroup,
        values: GroupValues,
        attributes: dict[str, Any],
    ) -> None:
        if parent is not None:
            trace_id, _, _, flags, state, valid = parent  # a tuple: no property calls
            if valid and (state is NO_STATE or not state):
                if flags & 1:  # sampled; an unsampled parent's child is not recorded
                    pairs = group.encoded(values) + encode_attributes(attributes)
                    span_id, end = new_span_id(), now_ns()
                    self._put(encode_fields(trace_id, span_id, parent, name, kind, start_time, end, pairs))
                return
        super().record_finished(name, kind, parent, start_time, group, values, attributes)


class Tracing:
    """The process's tracer, a span queue per destination, and what each exported and dropped."""

    def __init__(
        self,
        senders: Mapping[str, SpanSender],
        *,
        max_queue: int = MAX_QUEUE_SPANS,
        schedule_delay_s: float = SPAN_EXPORT_DELAY_MS / 1000,
    ) -> None:
        if not senders:
            raise ValueError("tracing needs at least one destination")
        resource = Resource.create({"service.name": SERVICE_NAME})
        scope = InstrumentationScope(TRACER_NAME)
        self._queues = {
            name: SpanQueue(
                name,
                sender,
                functools.partial(encode_scope_request, resource, scope),
                max_queue=max_queue,
                max_batch=min(max_queue, MAX_BATCH_SPANS),
                delay_s=schedule_delay_s,
            )
            for name, sender in senders.items()
        }
        # Its own tracer, not the global provider's: each app (tests run several) exports on its own.
        self.tracer = ProxyTracer(resource, scope, SpanEncoder(list(self._queues.values())))

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracing | None:
        """Tracing to the control plane (with a spans token) and to Tempo (when set); None (off) without."""
        senders: dict[str, SpanSender] = {}
        if settings.spans_token is not None:
            headers = {"authorization": f"Bearer {settings.spans_token.get_secret_value()}"}
            senders["control_plane"] = _OTLPSender(
                endpoint=settings.engine_traces_url, headers=headers, timeout=EXPORT_TIMEOUT_S
            )
            log.info("tracing on: spans go to the control plane at %s", settings.engine_traces_url)
        if settings.tempo_endpoint:
            url = traces_url(settings.tempo_endpoint)
            senders["tempo"] = _OTLPSender(endpoint=url, timeout=EXPORT_TIMEOUT_S)
            log.info("tracing on: spans go to Tempo at %s", url)
        if not senders:
            return None
        return cls(senders, schedule_delay_s=settings.otel_bsp_schedule_delay / 1000)

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per destination: (spans exported, spans dropped)."""
        return {name: (queue.exported, queue.dropped) for name, queue in self._queues.items()}

    @property
    def exported(self) -> int:
        return sum(queue.exported for queue in self._queues.values())

    @property
    def dropped(self) -> int:
        return sum(queue.dropped for queue in self._queues.values())

    def close(self) -> None:
        """Send what is queued (bounded), then stop; blocking, so the lifespan runs it in a thread."""
        # At once, so two back ends down cost one bound, not two (the supervisor's stop waits 20 s).
        closing = [
            threading.Thread(target=queue.close_within, args=(SHUTDOWN_TIMEOUT_S,), name=f"close-{name}")
            for name, queue in self._queues.items()
        ]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join()
        for name, (exported, dropped) in self.counts().items():
            log.info("tracing to %s stopped: %d spans exported, %d dropped", name, exported, dropped)


# --------------------------------------------------------------------------- the server span

# The clock a span's start and end times are read from (``RecordedSpan``'s), for spans made once their work
# is done (``record_route``, ``record_quota``).
now_ns: Final = time.time_ns


def start_server_span(tracer: RecordingTracer, scope: Scope) -> Span:
    """The SERVER span of a routed request: the child of the client's ``traceparent`` if it sent one."""
    method, path = scope["method"], scope["path"]
    return tracer.start_child(
        f"{method} {path}",
        _client_parent(scope["headers"]),
        SpanKind.SERVER,
        {"http.request.method": method, "http.route": path, "url.path": path},
    )


RequestToken = Token[tuple[Span, SpanContext] | tuple[None, None]]


def enter_request(span: Span) -> RequestToken:
    """Make ``span`` the parent of the spans started while the request runs; ``leave_request`` undoes it."""
    return _REQUEST_SPAN.set((span, span.get_span_context()))


def leave_request(token: RequestToken) -> None:
    _REQUEST_SPAN.reset(token)


def request_span() -> Span | None:
    """The running request's SERVER span; None outside a traced request."""
    return _REQUEST_SPAN.get()[0]


def fail_server_span(span: Span, exc: BaseException) -> None:
    """The request ended in ``exc`` before an answer was sent."""
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(StatusCode.ERROR)


def _client_parent(headers: Sequence[tuple[bytes, bytes]]) -> SpanContext | None:
    """The client's span from its ``traceparent`` (and ``tracestate``); None starts a new trace.

    The headers go into a dict in one C call: a Python loop over them cost every request more than
    the lookups (a repeated header: the last one counts, as before)."""
    by_name = dict(headers)
    traceparent = by_name.get(b"traceparent")
    if traceparent is None:
        return None
    carrier = {"traceparent": traceparent.decode("latin-1")}
    tracestate = by_name.get(b"tracestate")
    if tracestate is not None:
        carrier["tracestate"] = tracestate.decode("latin-1")
    return trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()


def end_server_span(span: Span, status: int) -> None:
    """The answer's status on the server span (0: none was sent), which ends it."""
    if status:
        span.set_attribute("http.response.status_code", status)
    if status >= 500:  # a 4xx is the client's doing, not the server's error (HTTP conventions)
        span.set_attribute("error.type", str(status))
        span.set_status(StatusCode.ERROR)
    span.end()


def span_ids(span: Span) -> tuple[str, str]:
    """``span``'s trace id and span id in hex, as OpenTelemetry prints them; empty if it has none."""
    trace_id, span_id, _, _, _, valid = span.get_span_context()  # a tuple: no property calls
    return _hex_ids(trace_id, span_id) if valid else ("", "")


def _hex_ids(trace_id: int, span_id: int) -> tuple[str, str]:
    """As format_trace_id and format_span_id print them; hex() takes half the time of a format spec."""
    return trace_id.to_bytes(16, "big").hex(), span_id.to_bytes(8, "big").hex()


def annotate_request(
    span: Span,
    *,
    decision_id: str,
    policy_version: str,
    requested_model: str,
    overrides: Mapping[str, str],
    quota_remaining: Mapping[str, float],
    served: tuple[str, str] | None,
) -> None:
    """The decision and the GenAI request on the server span; ``served`` is (provider, model)."""
    span.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": requested_model,
            "symphony.decision_id": decision_id,
            "symphony.policy_version": policy_version,
            "symphony.overrides": _json(overrides),
            "symphony.quota_remaining": _json(quota_remaining),
        }
    )
    if served is not None:
        span.set_attributes({"gen_ai.provider.name": served[0], "gen_ai.response.model": served[1]})


def _json(value: Mapping[str, object]) -> str:
    if not value:  # the overrides, as a rule
        return "{}"
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# --------------------------------------------------------------------------- child spans


_ROUTE_GROUP: Final = KeptAttributes(
    "symphony.policy", "symphony.policy_version", "symphony.chosen", "symphony.candidates"
)


def record_route(
    tracer: RecordingTracer,
    start_time: int,
    *,
    decision_id: str,
    policy: str,
    policy_version: str,
    chosen: str,
    propensity: float,
    candidates: Sequence[str],
) -> None:
    """The routing decision's span, from ``start_time`` (``now_ns()`` before it was made) to now."""
    tracer.record_finished(
        "symphony.route",
        SpanKind.INTERNAL,
        _REQUEST_SPAN.get()[1],
        start_time,
        _ROUTE_GROUP,
        (policy, policy_version, chosen, tuple(candidates)),
        {"symphony.decision_id": decision_id, "symphony.propensity": propensity},
    )


def route_failed(tracer: RecordingTracer, start_time: int, exc: BaseException) -> None:
    """The routing decision's span when deciding raised ``exc``."""
    _end_failed(tracer.start_child("symphony.route", _REQUEST_SPAN.get()[1], start_time=start_time), exc)


_QUOTA_GROUP: Final = KeptAttributes("gen_ai.provider.name", "gen_ai.request.model", "symphony.quota.outcome")


def record_quota(
    tracer: RecordingTracer,
    start_time: int,
    provider: str,
    model: str,
    outcome: str | BaseException,
    remaining: Mapping[str, float],
) -> None:
    """An admission's span, from ``start_time`` to now. ``outcome``: ``granted``, the refusal's kind, or what
    the quota gate raised; ``remaining``: what a grant's reservations saw."""
    parent = _REQUEST_SPAN.get()[1]
    if not isinstance(outcome, str):
        values = (provider, model, "error")
        span = tracer.start_child(
            "symphony.quota.reserve", parent, SpanKind.INTERNAL, _QUOTA_GROUP.as_dict(values), start_time
        )
        _end_failed(span, outcome)
        return
    attributes = {"symphony.quota_remaining": _json(remaining)} if remaining else {}
    tracer.record_finished(
        "symphony.quota.reserve",
        SpanKind.INTERNAL,
        parent,
        start_time,
        _QUOTA_GROUP,
        (provider, model, outcome),
        attributes,
    )


def _end_failed(span: Span, exc: BaseException) -> None:
    """End ``span`` as a ``with`` block that ``exc`` escaped ends it: its exception event, an error status."""
    span.__exit__(type(exc), exc, exc.__traceback__)


def start_attempt(tracer: RecordingTracer, provider: str, model: str, number: int) -> Span:
    """A provider attempt's CLIENT span (GenAI inference span: ``{operation} {model}``)."""
    return tracer.start_child(
        f"chat {model}",
        _REQUEST_SPAN.get()[1],
        SpanKind.CLIENT,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "symphony.attempt": number,
        },
    )


# A trace flags byte in hex: formatting TraceFlags (an int subclass) through a format spec took as long as
# the rest of the header.
_FLAGS_HEX: Final = tuple(f"{flags:02x}" for flags in range(256))


def trace_headers(span: Span) -> dict[str, str]:
    """The W3C headers that make ``span`` the parent of the provider's work."""
    trace_id, span_id, _, flags, state, _ = span.get_span_context()  # a tuple: no property calls
    trace_hex, span_hex = _hex_ids(trace_id, span_id)
    headers = {"traceparent": f"00-{trace_hex}-{span_hex}-{_FLAGS_HEX[flags]}"}
    if state is not NO_STATE and state:
        headers["tracestate"] = state.to_header()
    return headers


def end_attempt(span: Span, usage: Usage, *, stream: bool) -> None:
    """End an attempt's span from its usage event (called once: the event is made once)."""
    span.set_attributes(
        {
            "gen_ai.response.model": usage.model,
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "symphony.attempt.status": usage.status,
        }
    )
    if stream:
        span.set_attribute("gen_ai.response.time_to_first_chunk", usage.ttfb_ms / 1000)
    _mark_failure(span, usage.status)
    span.end()


def _mark_failure(span: Span, status: AttemptStatus) -> None:
    if status != "ok":
        span.set_attribute("error.type", status)
        span.set_status(StatusCode.ERROR)
