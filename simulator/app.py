"""The provider simulator: every catalog provider at its real paths, in its own wire format.

Provider P is served below ``catalog.providers[P].simulated_base_url(sim_url, P)``
(``/openai/v1``, ``/anthropic/v1``, ``/gemini/v1beta``, ``/perplexity``, ...) at the
provider's real paths: ``/chat/completions`` (OpenAI-compatible), ``/messages``
(Anthropic), ``/models/{model}:generateContent`` and ``:streamGenerateContent``
(Gemini), ``GET /models``, and ``/embeddings`` where the provider has embedding models
(``simulator.embeddings``); ``GET /{provider}/status`` is its status page
(``simulator.status_page``). The admin API (``admin``) sets faults and limits.
"""

from __future__ import annotations

from collections.abc import Mapping

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.admin import Admin, AdminError, admin_error
from simulator.anthropic_wire import AnthropicWire
from simulator.gemini_wire import GeminiWire
from simulator.openai_wire import OpenAIWire, error_body
from simulator.serving import JSON, Simulator
from simulator.status_page import status_endpoint
from simulator.wire import Wire
from symphony.catalog import Catalog, load_catalog
from symphony.catalog import Wire as WireName
from symphony.clock import Clock, shared_clock
from symphony.health import health_body
from symphony.redis_client import sync_redis
from symphony.settings import Settings

WIRES: dict[WireName, Wire] = {"openai": OpenAIWire(), "anthropic": AnthropicWire(), "gemini": GeminiWire()}
GENERATE_PATHS: dict[WireName, str] = {
    "openai": "/chat/completions",
    "anthropic": "/messages",
    "gemini": "/models/{target}",  # target = "{model}:generateContent" | "{model}:streamGenerateContent"
}


def provider_routes(sim: Simulator) -> list[Route]:
    routes: list[Route] = []
    for provider, spec in sim.catalog.providers.items():
        base = spec.simulated_base_url("", provider)
        wire = WIRES[spec.wire]
        generate = sim.generate_endpoint(provider, wire)
        routes.append(Route(base + GENERATE_PATHS[spec.wire], generate, methods=["POST"]))
        routes.append(Route(base + "/models", sim.models_endpoint(provider, wire), methods=["GET"]))
        routes.append(Route(f"/{provider}/status", status_endpoint(sim, provider), methods=["GET"]))
        if spec.embeddings:
            routes.append(
                Route(base + "/embeddings", sim.embeddings_endpoint(provider, wire), methods=["POST"])
            )
    return routes


_HEALTH = health_body("sim")


async def health(request: Request) -> Response:
    return Response(_HEALTH, media_type=JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body = error_body(str(exc.detail), param=None, code=None)
    return Response(body, status_code=exc.status_code, media_type=JSON, headers=exc.headers)


def create_app(
    clock: Clock, catalog: Catalog, *, seed: int | None = None, keys: Mapping[str, str] | None = None
) -> Starlette:
    """The simulator app; ``seed`` makes the drawn answers and faults reproducible.

    ``keys`` (provider -> key): those providers accept only that key, as the real ones do.
    """
    sim = Simulator(clock, catalog, seed=seed, keys=keys)
    routes = [Route("/health", health, methods=["GET"]), *Admin(sim).routes(), *provider_routes(sim)]
    handlers = {AdminError: admin_error, HTTPException: _http_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def read_clock(redis_url: str) -> Clock:
    """The shared clock as published in Redis at this moment."""
    client = sync_redis(redis_url)
    try:
        return shared_clock(client)
    finally:
        client.close()


def run_simulator(settings: Settings) -> None:
    """Serve the simulator on 127.0.0.1:``settings.sim_port`` until stopped (blocking)."""
    app = create_app(read_clock(settings.redis_url), load_catalog())
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=settings.sim_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through the process's handler (LOG_FORMAT)
        timeout_graceful_shutdown=5,
    )
