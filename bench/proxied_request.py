"""A proxied chat request's tracing calls, made as the proxy makes them: what the tracing benches measure.

``trace_request`` calls ``proxy.tracing``'s helpers in the proxy's order (the server span, the route, the
quota reservation, one attempt with its upstream headers, the decision on the server span, the end), with
``between`` called where the proxy runs its other work (reading the body, the upstream call, writing the
answer). Import it after putting the checkout to measure first on ``sys.path``: it uses that checkout's
``proxy.tracing``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxy import tracing
from proxy.recorded_spans import RecordingTracer
from symphony.events import Usage

SPANS_PER_REQUEST = 4
# A chat completion's ASGI scope as the proxy sees it behind k6: the headers the server span reads.
SCOPE: dict[str, Any] = {
    "method": "POST",
    "path": "/v1/chat/completions",
    "headers": [
        (b"host", b"127.0.0.1:8080"),
        (b"authorization", b"Bearer sk-symphony-bench"),
        (b"content-type", b"application/json"),
        (b"content-length", b"120"),
        (b"user-agent", b"k6/1.0"),
        (b"accept", b"*/*"),
        (b"accept-encoding", b"gzip"),
    ],
}


def _nothing() -> None:
    pass


def trace_request(
    tracer: RecordingTracer, number: int, attempt_usage: Usage, between: Callable[[], None] = _nothing
) -> None:
    """Request ``number``'s spans, each ended (so encoded and queued) as the proxy ends it; ``attempt_usage``
    (``usage(number)``, made beforehand as the proxy makes it whether it traces or not) ends the attempt."""
    decided = decision_id(number)
    server = tracing.start_server_span(tracer, SCOPE)
    token = tracing.enter_request(server)
    between()
    tracing.record_route(
        tracer,
        tracing.now_ns(),
        decision_id=decided,
        policy="champion",
        policy_version="v12",
        chosen="openai/gpt-4o-mini",
        propensity=0.9,
        candidates=("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"),
    )
    remaining = {
        "openai/gpt-4o-mini tokens per 1m": 150_000.0 - number,
        "app dev requests per 1d": 9e4 - number,
    }
    tracing.record_quota(tracer, tracing.now_ns(), "openai", "gpt-4o-mini", "granted", remaining)
    attempt = tracing.start_attempt(tracer, "openai", "gpt-4o-mini", 1)
    tracing.trace_headers(attempt)
    between()
    tracing.end_attempt(attempt, attempt_usage, stream=False)
    tracing.annotate_request(
        server,
        decision_id=decided,
        policy_version="v12",
        requested_model="auto",
        overrides={},
        quota_remaining=remaining,
        served=("openai", "gpt-4o-mini"),
    )
    tracing.span_ids(server)
    tracing.leave_request(token)
    between()
    tracing.end_server_span(server, 200)


def decision_id(number: int) -> str:
    return f"01KBBENCH{number:017d}"


def usage(number: int) -> Usage:
    """Request ``number``'s attempt's usage event: its token counts differ from request to request."""
    return Usage(
        event_id=f"01KBUSAGE{number:017d}",
        ts=1_764_633_600_000 + number,
        decision_id=decision_id(number),
        app="dev",
        provider="openai",
        model="gpt-4o-mini",
        attempt=1,
        status="ok",
        input_tokens=12 + number % 7,
        output_tokens=5,
        ttfb_ms=40.0,
        latency_ms=41.0,
        cost_usd=0.00001,
    )
