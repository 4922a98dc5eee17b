"""The engine's HTTP query API: the one way other processes read ClickHouse in embedded mode.

``GET /health`` -> ``{"status": "ok"}``; ``POST /query`` with ``{"sql": "..."}`` ->
``{"columns": [...], "rows": [[...]]}``. Queries run with ``readonly=1``; a
statement that is not a read, or SQL that ClickHouse rejects, gets a 400 with
the reason in ``{"error": ...}``. The server runs in a daemon thread of the
engine process, on 127.0.0.1 only, without signal handlers of its own.
"""

from __future__ import annotations

import decimal
import ipaddress
import socket
import threading
import time
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sinks.clickhouse_store import ClickHouseStore, QueryError, StoreUnavailable
from symphony import clock

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


def create_app(store: ClickHouseStore) -> Starlette:
    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def query(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        sql = body.get("sql") if isinstance(body, dict) else None
        if not isinstance(sql, str):
            return _json({"error": 'expected a JSON body {"sql": "..."}'}, 400)
        try:
            result = await run_in_threadpool(store.query_read_only, sql)
        except QueryError as exc:
            return _json({"error": str(exc)}, 400)
        except StoreUnavailable as exc:
            return _json({"error": f"ClickHouse unavailable: {exc}"}, 503)
        return _json({"columns": result.columns, "rows": result.rows})

    return Starlette(routes=[Route("/health", health), Route("/query", query, methods=["POST"])])


class QueryApi:
    """The query API served from a daemon thread; ``start`` returns once it accepts connections."""

    def __init__(self, store: ClickHouseStore, port: int, host: str = "127.0.0.1") -> None:
        config = uvicorn.Config(create_app(store), host=host, port=port, lifespan="off", log_level="warning")
        self._server = uvicorn.Server(config)
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        # Bind here, in the caller's thread, so a busy port is a clear error at start.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"engine query API cannot listen on {self._host}:{self._port}: {exc}") from exc
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
