"""The request handlers and the resources they share (clock, upstream client, emitter).

``Gateway`` is built without I/O; ``start()`` (app lifespan) reads the shared
clock and opens the pooled upstream client, the Redis client and the event
emitter; ``stop()`` flushes every queued event and closes them.

One routed request = one ``Decision`` event (before the upstream call) and one
``Usage`` event (when the call ends, however it ends), both sharing
``decision_id``. Requests refused before routing (bad input, unknown model) emit
nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import redis
import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import Response

from proxy import errors
from proxy.attempt import Attempt
from proxy.body import MAX_BODY_BYTES, parse_chat_request, read_limited
from proxy.emitter import EventEmitter
from proxy.routing import AUTO_MODELS, Route, Router
from proxy.streaming import RelayResponse, usage_tokens
from proxy.upstream import Upstream, attempt_status, is_timeout, new_http_client, rate_limit_headers
from symphony.catalog import Catalog
from symphony.clock import Clock, RealClock, shared_clock
from symphony.events import Decision, new_id
from symphony.settings import Settings

log = logging.getLogger(__name__)

JSON = "application/json"
APP_HEADER = "x-symphony-app"
TASK_HEADER = "x-symphony-task"
DECISION_HEADER = "x-symphony-decision-id"
ARM_HEADER = "x-symphony-arm"
POLICY_HEADER = "x-symphony-policy"


@dataclass
class Runtime:
    clock: Clock
    http: httpx.AsyncClient
    upstream: Upstream
    redis: aioredis.Redis
    emitter: EventEmitter


def models_body(catalog: Catalog) -> bytes:
    """``GET /v1/models``: ``auto``, every arm as ``provider/model``, every plain model name."""
    entries: dict[str, str] = {model: "symphony" for model in sorted(AUTO_MODELS)}
    for provider, spec in catalog.providers.items():
        for model in spec.models:
            entries[f"{provider}/{model}"] = provider
    for provider, spec in catalog.providers.items():
        for model in spec.models:
            entries.setdefault(model, provider)
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": owner} for name, owner in entries.items()
    ]
    return orjson.dumps({"object": "list", "data": data})


def _text_chars(content: object) -> int:
    """Characters of text in a message's content (a string or a list of typed parts)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part.get("text") or "") for part in content if isinstance(part.get("text"), str))
    return 0


def _read_clock(redis_url: str) -> Clock:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2.0, socket_timeout=2.0)
    try:
        return shared_clock(client)
    except redis.RedisError as exc:
        log.warning("could not read the shared clock from Redis (%s); using real time", exc)
        return RealClock()
    finally:
        client.close()


class Gateway:
    def __init__(
        self, settings: Settings, catalog: Catalog, router: Router, *, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._router = router
        self._max_body_bytes = max_body_bytes
        self._models_body = models_body(catalog)
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise errors.ApiError(503, "The proxy is not started.", type_="api_error", code="not_ready")
        return self._runtime

    async def start(self) -> None:
        settings = self._settings
        clock = await asyncio.to_thread(_read_clock, settings.redis_url)
        http = new_http_client()
        client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
        emitter = EventEmitter(client, settings.event_shards)
        emitter.start()
        self._runtime = Runtime(clock, http, Upstream(http, settings.simulator_url), client, emitter)

    async def stop(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is None:
            return
        try:
            await runtime.emitter.close()
        finally:
            await runtime.http.aclose()
            await runtime.redis.aclose()
        log.info(
            "proxy stopped: %d events published, %d dropped",
            runtime.emitter.published,
            runtime.emitter.dropped,
        )

    async def health(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def models(self, request: Request) -> Response:
        return Response(self._models_body, media_type=JSON)

    async def chat_completions(self, request: Request) -> Response:
        runtime = self.runtime
        data, chat = parse_chat_request(await read_limited(request, self._max_body_bytes))
        route = self._router.route(chat.model)
        if route is None:
            raise errors.model_not_found(chat.model)
        app = request.headers.get(APP_HEADER) or "default"
        task = request.headers.get(TASK_HEADER) or "chat"
        decision_id = self._decide(runtime, route, app, task, data, chat.stream)
        attempt = Attempt(
            decision_id=decision_id,
            app=app,
            provider=route.provider,
            model=route.model,
            price=self._catalog.arm(route.provider, route.model),
            clock=runtime.clock,
            emitter=runtime.emitter,
        )
        try:
            return await self._call(
                runtime, route, attempt, data, stream=chat.stream, forward_usage=chat.include_usage
            )
        except BaseException:
            attempt.finish("error")  # no-op when the failure path already finished it
            raise

    def _decide(
        self, runtime: Runtime, route: Route, app: str, task: str, data: dict[str, Any], stream: bool
    ) -> str:
        ts = runtime.clock.now_ms()
        decision_id = new_id(ts)
        messages: list[dict[str, Any]] = data["messages"]
        features = {
            "messages": float(len(messages)),
            "prompt_chars": float(sum(_text_chars(message.get("content")) for message in messages)),
        }
        runtime.emitter.emit(
            Decision(
                event_id=new_id(ts),
                ts=ts,
                decision_id=decision_id,
                request_id=new_id(ts),
                app=app,
                task=task,
                features=features,
                candidates=route.candidates,
                probabilities=route.probabilities,
                provider=route.provider,
                model=route.model,
                policy=route.policy,
                policy_version=route.policy_version,
                propensity=route.propensity,
                stream=stream,
            )
        )
        return decision_id

    async def _call(
        self,
        runtime: Runtime,
        route: Route,
        attempt: Attempt,
        data: dict[str, Any],
        *,
        stream: bool,
        forward_usage: bool,
    ) -> Response:
        data["model"] = route.model
        if stream:
            # Always ask for the usage chunk so the usage event has token counts.
            options = data.get("stream_options")
            data["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        headers = {DECISION_HEADER: attempt.decision_id, ARM_HEADER: route.arm, POLICY_HEADER: route.policy}
        try:
            upstream = await runtime.upstream.chat(route.provider, orjson.dumps(data))
        except httpx.HTTPError as exc:
            timeout = is_timeout(exc)
            attempt.finish("timeout" if timeout else "error")
            log.warning("upstream %s failed: %r", route.arm, exc)
            raise errors.upstream_failed(route.provider, timeout=timeout) from None
        attempt.rate_limit = rate_limit_headers(upstream.headers)
        if stream and upstream.status_code == 200:
            headers["cache-control"] = "no-cache"
            return RelayResponse(upstream, attempt, forward_usage=forward_usage, headers=headers)
        try:
            chunks: list[bytes] = []
            async for chunk in upstream.aiter_raw():
                attempt.first_byte()
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            timeout = is_timeout(exc)
            attempt.finish("timeout" if timeout else "error")
            raise errors.upstream_failed(route.provider, timeout=timeout) from None
        finally:
            await upstream.aclose()
        content = b"".join(chunks)
        status = attempt_status(upstream.status_code)
        tokens = (0, 0)
        if status == "ok":
            try:
                tokens = usage_tokens(orjson.loads(content).get("usage"))
            except (orjson.JSONDecodeError, AttributeError):
                log.warning("upstream %s sent a body without usage", route.arm)
        attempt.finish(status, *tokens)
        media_type = upstream.headers.get("content-type", JSON)
        return Response(content, status_code=upstream.status_code, media_type=media_type, headers=headers)
