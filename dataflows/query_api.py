"""The engine's HTTP query API: the one way other processes read ClickHouse in embedded mode.

``GET /health`` -> ``{"status": "ok", "service": "engine"}``; ``POST /query`` with ``{"sql": "..."}`` ->
``{"columns": [...], "rows": [[...]]}``. Queries run in the analysts' sandbox
(``sinks.analyst_sandbox``): a statement that is not one read, SQL that ClickHouse
rejects or a query past a limit gets a 400 with the reason in ``{"error": ...}``;
every sandbox handle busy is a 429; a query whose client goes away is cancelled.
``GET /metrics``: the engine's metrics in the Prometheus text format
(``dataflows.metrics``). Every answer, errors included, is JSON (metrics aside):
an unknown path is a 404, a wrong method a 405, a failure of the engine a 503.

``/console``: the operator console and its live feed (``dataflows.console_routes``), and ``/query``,
``/learner/metrics`` and ``/traces/{trace_id}`` again under ``/console/``: a browser sends the
Basic credentials it gave the console's pages only to paths below them.

``GET /traces/{trace_id}``: a trace's spans and its decision (``dataflows.trace_view``), where
an SLO alert's trace link points by default. ``POST /v1/traces``: the proxy's spans over
OTLP/HTTP into ``otel_traces`` (``dataflows.span_intake``; its answers are OTLP's protobuf,
not JSON); there when the engine writes spans (its leader does).

``GET /console/learner/diff``: the champion against the published challenger, the diff
``just learner-promote`` would open (``dataflows.learner_diff``); there when the engine evaluates policies.

``GET /console/evidence/{bundle_id}``: an alert's evidence bundle, the file when this host holds it,
else its recorded row (``dataflows.evidence_view``); there when the engine is given its ``VAR_DIR``.

``POST /evidence/capture`` (admin): ``{"decision_id": "...", "trigger"?, "fingerprint"?,
"incident_id"?}`` builds that decision's evidence bundle (``sinks.evidence.service``), opens or
comments on its incident's tickets when a fingerprint is given, and answers the outcome; an
unknown decision is a 404.

Two routes exist only when the engine turns them on: ``POST /insert?table=T`` (an
Arrow IPC stream body), through which the other processes of a cluster write to
the chDB this process owns (``sinks.engine_writer``); and ``POST /faults`` (test
only: ``{"outage_s": 3}``, ``{"lost_acks": 2}`` or ``{"die_after_insert": "decisions"}``,
see ``WriteFaults``). The server
runs in a daemon thread of the engine process, on 127.0.0.1 only, without signal
handlers of its own.
"""

from __future__ import annotations

import asyncio
import decimal
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from dataflows.api_auth import TokenGuard, Tokens
from dataflows.console_routes import console_routes
from dataflows.evidence_view import MEDIA_TYPE as BUNDLE_MEDIA_TYPE
from dataflows.evidence_view import BundleNotFound, FoundBundle, checked, find_bundle
from dataflows.learner_report import MAX_DAYS, MAX_RESAMPLES
from dataflows.span_intake import TRACES_PATH, TracesEndpoint
from dataflows.trace_view import TraceNotFound, normalized, read_trace
from sinks.analyst_sandbox import new_query_id
from sinks.clickhouse import SCHEMAS
from sinks.clickhouse_store import ClickHouseStore, QueryError, SandboxBusy, StoreUnavailable, WriteFaults
from sinks.evidence.capture import CaptureError
from sinks.evidence.service import EvidenceCapture, EvidenceRequest
from sinks.span_writer import SpanWriter
from symphony import clock
from symphony.health import health_fields

log = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DISCONNECT_POLL_S = 0.25  # how often a running analyst query looks for its client
JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body, default=_json_default, option=JSON_OPTIONS), status, media_type="application/json"
    )


def create_app(
    store: ClickHouseStore,
    *,
    tokens: Tokens | None,
    metrics: Callable[[], str] | None = None,
    accept_writes: bool = False,
    faults: WriteFaults | None = None,
    learner: Callable[[int, int], dict[str, Any]] | None = None,
    spans: SpanWriter | None = None,
    evidence: EvidenceCapture | None = None,
    console: Callable[[], dict[str, Any]] | None = None,
    var_dir: Path | None = None,
    policy_diff: Callable[[], dict[str, Any]] | None = None,
) -> Starlette:
    """The API; with ``tokens`` every route but /health needs a role (``dataflows.api_auth``)."""

    async def health(request: Request) -> Response:
        return _json(health_fields("engine"))

    async def query(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        sql = body.get("sql") if isinstance(body, dict) else None
        if not isinstance(sql, str):
            return _json({"error": 'expected a JSON body {"sql": "..."}'}, 400)
        query_id = new_query_id()
        work = asyncio.ensure_future(run_in_threadpool(store.query_read_only, sql, query_id))
        try:
            result = await _finish_unless_client_leaves(
                request, work, lambda: store.cancel_analyst_query(query_id)
            )
        except QueryError as exc:
            return _json({"error": str(exc)}, 400)
        except SandboxBusy as exc:
            return _json({"error": str(exc)}, 429)
        except StoreUnavailable as exc:
            return _json({"error": f"ClickHouse unavailable: {exc}"}, 503)
        return _json({"columns": result.columns, "rows": result.rows})

    async def learner_metrics(request: Request) -> Response:
        if learner is None:
            return _json({"error": "this engine does not evaluate policies (no champion policy loaded)"}, 404)
        try:
            days = _bounded_int(request, "days", 7, 1, MAX_DAYS)
            resamples = _bounded_int(request, "resamples", 1000, 50, MAX_RESAMPLES)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        try:
            return _json(await run_in_threadpool(learner, days, resamples))
        except ValueError as exc:  # a malformed challenger in Redis
            return _json({"error": f"cannot evaluate the published challenger: {exc}"}, 409)

    async def learner_diff(request: Request) -> Response:
        if policy_diff is None:
            return _json({"error": "this engine does not evaluate policies (no champion policy loaded)"}, 404)
        try:
            return _json(await run_in_threadpool(policy_diff))
        except ValueError as exc:  # a malformed challenger in Redis
            return _json({"error": f"cannot compare the published challenger: {exc}"}, 409)

    async def trace(request: Request) -> Response:
        try:
            trace_id = normalized(request.path_params["trace_id"])
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        try:
            return _json(await run_in_threadpool(read_trace, store, trace_id))
        except TraceNotFound as exc:
            return _json({"error": str(exc)}, 404)
        except SandboxBusy as exc:
            return _json({"error": str(exc)}, 429)
        except StoreUnavailable as exc:
            return _json({"error": f"ClickHouse unavailable: {exc}"}, 503)

    async def bundle(request: Request) -> Response:
        assert var_dir is not None
        try:
            bundle_id = checked(request.path_params["bundle_id"])
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        try:
            found: FoundBundle = await run_in_threadpool(find_bundle, store, var_dir, bundle_id)
        except BundleNotFound as exc:
            return _json({"error": str(exc)}, 404)
        except SandboxBusy as exc:
            return _json({"error": str(exc)}, 429)
        except StoreUnavailable as exc:
            return _json({"error": f"ClickHouse unavailable: {exc}"}, 503)
        if found.path is None:
            return _json(found.row)
        return FileResponse(
            found.path,
            media_type=BUNDLE_MEDIA_TYPE,
            filename=found.path.name,
            headers={"cache-control": "no-cache"},
        )

    async def prometheus(request: Request) -> Response:
        if metrics is None:
            return Response("", media_type=METRICS_CONTENT_TYPE)
        try:
            text = await run_in_threadpool(metrics)
        except Exception as exc:  # Redis down, say: report it, the engine carries on
            return Response(f"# metrics unavailable: {exc}\n", 503, media_type=METRICS_CONTENT_TYPE)
        return Response(text, media_type=METRICS_CONTENT_TYPE)

    async def insert(request: Request) -> Response:
        table = request.query_params.get("table", "")
        if table not in SCHEMAS:
            return _json({"error": f"unknown table {table!r}"}, 400)
        try:
            data = pa.ipc.open_stream(await request.body()).read_all()
        except (pa.ArrowException, OSError) as exc:  # Arrow reports a malformed stream as an OSError too
            return _json({"error": f"expected an Arrow IPC stream: {exc}"}, 400)
        try:
            await run_in_threadpool(store.insert_arrow, table, data)
        except Exception as exc:  # the writer retries: say why, as ClickHouse said it
            return _json({"error": f"insert into {table} failed: {str(exc).strip()[:500]}"}, 503)
        return _json({"rows": data.num_rows})

    async def capture(request: Request) -> Response:
        assert evidence is not None
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        try:
            asked = EvidenceRequest.from_json(body)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        try:
            return _json(await run_in_threadpool(evidence, asked))
        except CaptureError as exc:
            return _json({"error": str(exc)}, 404)

    async def inject(request: Request) -> Response:
        assert faults is not None
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        try:
            outage_s, lost_acks = float(body.get("outage_s", 0)), int(body.get("lost_acks", 0))
            die = str(body.get("die_after_insert", ""))
        except (AttributeError, TypeError, ValueError):
            expected = '{"outage_s": seconds}, {"lost_acks": count} or {"die_after_insert": table}'
            return _json({"error": f"expected {expected}"}, 400)
        if outage_s:
            faults.outage(outage_s)
        if lost_acks:
            faults.lost_acks(lost_acks)
        if die:
            faults.die_after_insert(die)
        return _json({"status": "ok"})

    routes = [
        Route("/health", health),
        Route("/query", query, methods=["POST"]),
        Route("/metrics", prometheus),
        Route("/learner/metrics", learner_metrics),
        Route("/traces/{trace_id}", trace),
        # The same reads under /console/, where a browser sends the credentials it gave the console's pages.
        Route("/console/query", query, methods=["POST"]),
        Route("/console/learner/metrics", learner_metrics),
        Route("/console/learner/diff", learner_diff),
        Route("/console/traces/{trace_id}", trace),
        *console_routes(console),
    ]
    if spans is not None:
        routes.append(Route(TRACES_PATH, TracesEndpoint(spans).post, methods=["POST"]))
    if accept_writes:
        routes.append(Route("/insert", insert, methods=["POST"]))
    if evidence is not None:
        routes.append(Route("/evidence/capture", capture, methods=["POST"]))
    if var_dir is not None:
        # Before the console's catch-all /console/{view:path}, which would otherwise answer the page.
        routes.insert(0, Route("/console/evidence/{bundle_id}", bundle))
    if faults is not None:
        routes.append(Route("/faults", inject, methods=["POST"]))
    middleware = [Middleware(TokenGuard, tokens=tokens)] if tokens is not None else []
    handlers = {HTTPException: _http_error, Exception: _engine_error}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)  # type: ignore[arg-type]
    app.router.redirect_slashes = False  # `/query/` is a JSON 404, not an empty redirect
    return app


def _bounded_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"`{name}` must be a whole number from {low} to {high}, not {raw[:20]!r}")
    return int(raw)


async def _finish_unless_client_leaves(
    request: Request, work: asyncio.Future[Any], cancel: Callable[[], None]
) -> Any:
    """The result of ``work``; if the client hangs up first, ``cancel`` it (the query then ends at once)."""
    while not work.done():
        await asyncio.wait({work}, timeout=DISCONNECT_POLL_S)
        if not work.done() and await request.is_disconnected():
            log.info("an analyst's client went away: cancelling its query")
            await run_in_threadpool(cancel)
            break
    return await work


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return _json({"error": exc.detail}, exc.status_code)


async def _engine_error(request: Request, exc: Exception) -> Response:
    log.exception("engine API: %s %s failed", request.method, request.url.path)
    return _json({"error": f"the engine failed to answer ({type(exc).__name__}); see its log"}, 503)


class QueryApi:
    """The query API (``create_app``'s) served from a daemon thread; ``start`` returns once it accepts
    connections.

    ``port`` 0: a port the OS picks at the bind (no race with another process for a free
    port, as tests want); ``port`` then tells which.
    """

    def __init__(self, app: Starlette, port: int, host: str = "127.0.0.1") -> None:
        config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", log_level="warning", log_config=None
        )
        self._server = uvicorn.Server(config)
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on: after ``start``, the one the OS picked if it was given 0."""
        return self._port

    def start(self, timeout: float = 10.0) -> None:
        # Bind here, in the caller's thread, so a busy port is a clear error at start.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"engine query API cannot listen on {self._host}:{self._port}: {exc}") from exc
        self._port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="engine-query-api", daemon=True
        )
        self._thread.start()
        deadline = clock.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or clock.monotonic() > deadline:
                raise RuntimeError(f"engine query API did not start on {self._host}:{self._port}")
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
