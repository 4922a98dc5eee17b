"""The provider simulator: every catalog provider behind one ASGI app.

``POST /{provider}/v1/chat/completions`` and ``GET /{provider}/v1/models`` answer
in the OpenAI wire format for every provider in the catalog (issue 3 gives the
Anthropic and Gemini providers their own formats, plus faults and rate limits).
Each request plans its answer (``generation``), waits on the shared clock as the
model's latency says (``latency``) and renders it (``openai_wire``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import redis
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from symphony.catalog import Catalog, load_catalog
from symphony.clock import Clock, shared_clock, sleep
from symphony.events import new_id
from symphony.settings import Settings
from symphony.sim import openai_wire
from symphony.sim.generation import Completion, plan_completion
from symphony.sim.latency import Latency, Pacer, latency_for

JSON = "application/json"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Simulator:
    """The request handlers, over one clock, one catalog and one random stream."""

    def __init__(self, clock: Clock, catalog: Catalog, rng: random.Random) -> None:
        self.clock = clock
        self.catalog = catalog
        self.rng = rng

    def _models_of(self, provider: str) -> list[str]:
        spec = self.catalog.providers.get(provider)
        if spec is None:
            raise openai_wire.WireError(404, f"Unknown provider `{provider}`.", code="unknown_provider")
        return list(spec.models)

    async def health(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def models(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        body = openai_wire.models_body(provider, self._models_of(provider), self.clock.now_ms() // 1000)
        return Response(body, media_type=JSON)

    async def chat_completions(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        models = self._models_of(provider)
        chat = openai_wire.parse_request(await request.body())
        if chat.model not in models:
            raise openai_wire.model_not_found(chat.model)
        contents = [message.content for message in chat.messages]
        completion = plan_completion(self.rng, provider, chat.model, contents, chat.token_limit)
        latency = latency_for(provider, chat.model)
        now_ms = self.clock.now_ms()
        completion_id = f"chatcmpl-{new_id(now_ms)}"
        if chat.stream:
            frames = self._stream(
                completion_id, now_ms // 1000, chat.model, completion, latency, chat.include_usage
            )
            return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
        await sleep(self.clock, latency.total_s(completion.completion_tokens))
        return Response(
            openai_wire.completion_body(completion_id, now_ms // 1000, chat.model, completion),
            media_type=JSON,
        )

    async def _stream(
        self,
        completion_id: str,
        created: int,
        model: str,
        completion: Completion,
        latency: Latency,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        pacer = Pacer(self.clock, latency)
        await sleep(self.clock, latency.ttft_s)
        first = True
        frames = openai_wire.stream_frames(
            completion_id, created, model, completion, include_usage=include_usage
        )
        for frame, is_token in frames:
            if is_token:
                if not first:
                    await pacer.token()
                first = False
            yield frame


async def _wire_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, openai_wire.WireError)
    return Response(exc.body(), status_code=exc.status, media_type=JSON)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body = openai_wire.error_body(str(exc.detail), param=None, code=None)
    return Response(body, status_code=exc.status_code, media_type=JSON, headers=exc.headers)


def create_app(clock: Clock, catalog: Catalog, *, seed: int | None = None) -> Starlette:
    """The simulator app; ``seed`` makes the drawn answers reproducible."""
    sim = Simulator(clock, catalog, random.Random(seed))
    routes = [
        Route("/health", sim.health, methods=["GET"]),
        Route("/{provider}/v1/models", sim.models, methods=["GET"]),
        Route("/{provider}/v1/chat/completions", sim.chat_completions, methods=["POST"]),
    ]
    handlers = {openai_wire.WireError: _wire_error, HTTPException: _http_error}
    return Starlette(routes=routes, exception_handlers=handlers)


def read_clock(redis_url: str) -> Clock:
    """The shared clock as published in Redis at this moment."""
    client = redis.Redis.from_url(redis_url)
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
    )
