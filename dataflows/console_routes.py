"""The operator console over the engine's API: its built pages at ``/console`` and its live feed.

``GET /console`` (and any ``/console/<view>``) -> the single-page app (``index.html``);
``GET /console/assets/<file>`` -> its scripts, styles and fonts, built by ``just console-build``
into ``dataflows/console_assets`` and shipped with the package, so Python alone serves it.
``GET /console/events`` -> server-sent events: one ``snapshot`` event (``dataflows.console_feed``)
every second (``TICK_S``), until the browser goes away; a snapshot that fails is sent as a
``failure`` event, and the stream carries on. The admin and analyst roles may read all of it
(``dataflows.api_auth``); the console has nothing that writes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from symphony import clock

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "console_assets"
TICK_S = 1.0
# What the built assets may be: the names Vite writes (letters, digits, dots, dashes, underscores).
ASSET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _index(request: Request) -> Response:
    if request.path_params.get("view", "").startswith("assets/"):  # a file that is not there is not a view
        return JSONResponse({"error": "no such console asset"}, 404)
    index = ASSETS / "index.html"
    if not index.is_file():
        return JSONResponse({"error": "the console is not built: run `just console-build`"}, 503)
    return FileResponse(index, headers={"cache-control": "no-cache"})


def _asset(request: Request) -> Response:
    name = request.path_params["name"]
    if not name or not set(name) <= ASSET_CHARS or name.startswith("."):
        return JSONResponse({"error": f"no such console asset: {name[:80]!r}"}, 404)
    path = ASSETS / "assets" / name
    if not path.is_file():
        return JSONResponse({"error": f"no such console asset: {name[:80]!r}"}, 404)
    return FileResponse(path, headers={"cache-control": "public, max-age=31536000, immutable"})


class SharedSnapshot:
    """One snapshot for every open feed: taken at most once per ``max_age_s``, however many browsers watch.

    Each snapshot runs queries in the analysts' sandbox; without this, a hundred open tabs (or a caller
    opening feeds on purpose) would run a hundred times the queries and crowd out the analysts.
    """

    def __init__(self, take: Callable[[], dict[str, Any]], max_age_s: float) -> None:
        self._take = take
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._taken_at = float("-inf")
        self._last: dict[str, Any] = {}

    def __call__(self) -> dict[str, Any]:
        with self._lock:  # the others wait for the one taking it, then share it
            if clock.monotonic() - self._taken_at >= self._max_age_s:
                self._last = self._take()
                self._taken_at = clock.monotonic()
            return self._last


def _event(kind: str, body: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


def console_routes(snapshot: Callable[[], dict[str, Any]] | None, tick_s: float = TICK_S) -> list[Route]:
    """The console's routes; without ``snapshot`` (no Redis here) the feed says so and ends."""
    shared = None if snapshot is None else SharedSnapshot(snapshot, tick_s * 0.9)

    async def stream(request: Request) -> AsyncIterator[bytes]:
        if shared is None:
            yield _event("failure", {"error": "this engine has no console feed (it is not the leader)"})
            return
        while not await request.is_disconnected():
            try:
                yield _event("snapshot", await run_in_threadpool(shared))
            except Exception as exc:  # Redis or ClickHouse away: say so, try again next tick
                log.warning("console feed: %s", exc)
                yield _event("failure", {"error": f"snapshot failed: {type(exc).__name__}: {exc}"})
            await asyncio.sleep(tick_s)

    async def events(request: Request) -> Response:
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(stream(request), media_type="text/event-stream", headers=headers)

    return [
        Route("/console/events", events),
        Route("/console/assets/{name}", _asset),
        Route("/console", _index),
        Route("/console/{view:path}", _index),
    ]
