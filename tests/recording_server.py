"""A local HTTP server that records every call: the stand-in for Slack, PagerDuty and webhook receivers.

Each POST's path and body (parsed when it is JSON, else its bytes) is kept in order; it answers
as the service it stands in for does (PagerDuty's Events API: 202 with ``{"status": "success"}``;
Slack: 200 ``ok``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from simulator.background import BackgroundServer


@dataclass
class Recorder:
    calls: list[tuple[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str) -> list[Any]:
        with self._lock:
            return [body for called, body in self.calls if called == path]

    async def record(self, request: Request) -> Response:
        raw = await request.body()
        body = orjson.loads(raw or b"null") if "json" in request.headers.get("content-type", "") else raw
        with self._lock:
            self.calls.append((request.url.path, body))
        if request.url.path.startswith("/pagerduty"):
            return Response(
                orjson.dumps({"status": "success", "message": "Event processed"}), status_code=202
            )
        return PlainTextResponse("ok")


@contextmanager
def recording_server() -> Iterator[tuple[BackgroundServer, Recorder]]:
    recorder = Recorder()
    app = Starlette(routes=[Route("/{path:path}", recorder.record, methods=["POST"])])
    server = BackgroundServer(app).start()
    try:
        yield server, recorder
    finally:
        server.stop()
