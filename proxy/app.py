"""The proxy's ASGI app and its server.

Routes: ``POST /v1/chat/completions`` (OpenAI-compatible, streaming or not),
``GET /v1/models``, ``GET /health``. Every error, including unknown paths, is
answered in OpenAI's error shape.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy import errors
from proxy.gateway import Gateway
from proxy.routing import load_router
from symphony.catalog import load_catalog
from symphony.settings import Settings

log = logging.getLogger(__name__)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return errors.ApiError(exc.status_code, str(exc.detail), param=None).response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    return errors.ApiError(500, "The proxy failed to handle the request.", type_="api_error").response()


def create_app(settings: Settings) -> Starlette:
    """The proxy app. Reads the catalog and the champion policy now (a bad policy fails here)."""
    catalog = load_catalog()
    gateway = Gateway(settings, catalog, load_router(settings.policy_file, catalog))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    routes = [
        Route("/v1/chat/completions", gateway.chat_completions, methods=["POST"]),
        Route("/v1/models", gateway.models, methods=["GET"]),
        Route("/health", gateway.health, methods=["GET"]),
    ]
    handlers = {errors.ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


def run_proxy(settings: Settings) -> None:
    """Serve the proxy on ``settings.proxy_host:settings.proxy_port`` until SIGINT/SIGTERM (blocking).

    uvicorn finishes in-flight requests on SIGTERM, then the lifespan shutdown
    publishes every queued event before the process exits.
    """
    uvicorn.run(
        create_app(settings),
        host=settings.proxy_host,
        port=settings.proxy_port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="info",
    )
