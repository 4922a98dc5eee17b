"""The outermost middleware of the routed APIs: it times each request into
``symphony_request_duration_seconds`` and, with tracing on, opens the request's SERVER span, the
parent of the spans started while the request runs (``proxy.tracing.enter_request``).

One layer for both, so a traced request pays for one more coroutine and one ``send`` wrapper, not
two of each. The timer stops at the answer's last byte (a stream's included), or when the app
returns without one (code ``0``); the span ends after, once the app has returned. Outermost, so a
request that auth or the header limit refuses is timed and traced too.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy import tracing as spans
from proxy.metrics import ProxyMetrics
from proxy.tracing import Tracing
from symphony import clock


class RequestObserver:
    """Times (and with ``tracing``, traces) the requests to ``paths``; others pass untouched.

    ``tracing`` is read per request (the lifespan opens it); None when tracing is off.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ProxyMetrics,
        paths: frozenset[str],
        tracing: Callable[[], Tracing | None] | None = None,
    ) -> None:
        self._app = app
        self._metrics = metrics
        self._paths = paths
        self._tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self._paths:
            await self._app(scope, receive, send)
            return
        tracing = self._tracing() if self._tracing is not None else None
        span = spans.start_server_span(tracing.tracer, scope) if tracing is not None else None
        token = spans.enter_request(span) if span is not None else None
        trace_id = span.get_span_context()[0] if span is not None else 0  # the tuple, not its property
        started = clock.monotonic()
        status = 0
        observed = False

        def observe() -> None:
            nonlocal observed
            if not observed:
                observed = True
                self._metrics.request_finished(scope["path"], status, clock.monotonic() - started, trace_id)

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                observe()

        try:
            await self._app(scope, receive, observed_send)
        except BaseException as exc:
            if span is not None:
                spans.fail_server_span(span, exc)
            raise
        finally:
            observe()
            if token is not None:
                spans.leave_request(token)
            if span is not None:
                spans.end_server_span(span, status)
