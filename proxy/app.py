"""The proxy's ASGI app and its server.

Routes: ``POST /v1/chat/completions``, ``POST /v1/responses`` (stateless), ``POST /v1/embeddings``,
``GET /v1/models`` and
``GET /v1/models/{id}`` (OpenAI-compatible), ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``
(Anthropic-compatible), ``POST /v1/route/execute`` (native, the decision in the answer),
``POST /v1/feedback``, ``POST /v1/jobs``, ``GET`` and ``DELETE /v1/jobs/{id}`` (deferrable jobs),
``GET /health``, ``GET /metrics``.
Errors are answered in the shape the caller's SDK expects: Anthropic's under
``/v1/messages`` (and its ``count_tokens``), OpenAI's everywhere else, unknown paths included.

With tracing on (a spans token for the control plane, or ``TEMPO_ENDPOINT``; see
``proxy.tracing``), each routed request first gets its server span
(``proxy.request_observer.RequestObserver``, outermost, so a refused request is timed and traced too).
Before any route: headers larger than ``MAX_HEADER_BYTES`` are a 431
(``proxy.edge.header_limit``), then every path but ``/health`` and ``/metrics`` needs an
app key (``proxy.edge.auth``). Every log record the process writes is scrubbed of the
provider keys and of app keys (``proxy.edge.scrub``).

The lifespan owns what the process holds open (``proxy.resources``: clock, upstream
client, Redis client, emitter): it opens them, hands them to the gateway and to the
parts made with the routes (through a ``ResourceSlot``), and closes them last.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial

import redis.asyncio as aioredis
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from proxy import errors
from proxy.access_log import CLIENT_CLOSED
from proxy.adapters.base import Adapter
from proxy.adapters.registry import build_adapters
from proxy.api.embeddings_api import EmbeddingsApi
from proxy.api.feedback import FeedbackApi
from proxy.api.jobs_api import JobsApi
from proxy.api.messages_api import (
    ANTHROPIC_PATHS,
    COUNT_TOKENS_PATH,
    MESSAGES_PATH,
    MessagesApi,
    anthropic_error_response,
)
from proxy.api.openai_api import OpenAIApi
from proxy.api.responses_api import ResponsesApi
from proxy.api.route_execute import RouteExecuteApi
from proxy.breaker_states import BreakerStates
from proxy.decision_ids import DecisionIds
from proxy.edge.auth import Authenticator, AuthMiddleware, DispatchCheck, no_dispatches
from proxy.edge.auth_failures import AuthFailures
from proxy.edge.header_limit import HeaderLimitMiddleware
from proxy.edge.job_dispatch import JobDispatches
from proxy.edge.key_cache import AppKeyCache
from proxy.edge.scrub import Scrubber, install_log_scrubber
from proxy.gateway import REPLICA, Gateway
from proxy.metrics import ProxyMetrics
from proxy.request_observer import RequestObserver
from proxy.resources import Resources, ResourceSlot
from proxy.routing.router import load_champion
from proxy.tracing import TRACED_PATHS, Tracing, tracing_on
from symphony.catalog import Catalog
from symphony.gc_tuning import freeze_startup
from symphony.health import health_body
from symphony.process_logging import log_to_stderr
from symphony.settings import Settings, load_provider_keys

log = logging.getLogger(__name__)

AUTH_DISABLED_WARNING = (
    "AUTH_DISABLED=true: the proxy asks no app key; anyone who can reach it spends through it "
    "without budgets or limits. Use this for local development only."
)


def render_error(path: str, error: errors.ApiError) -> Response:
    """``error`` in the shape the SDK calling ``path`` expects."""
    if path in ANTHROPIC_PATHS:
        return anthropic_error_response(error)
    return error.response()


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ApiError)
    return render_error(request.url.path, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return render_error(request.url.path, errors.ApiError(exc.status_code, str(exc.detail)))


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its request's body arrived: no one to answer and nothing failed
    here, so no error and no traceback (under load, every client timeout made two). It counts in
    the request metrics under nginx's 499."""
    log.debug("client closed the connection during %s %s", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return render_error(
        request.url.path, errors.ApiError(500, "The proxy failed to handle the request.", type_="api_error")
    )


_HEALTH = health_body("proxy")


async def _health(request: Request) -> Response:
    return Response(_HEALTH, media_type="application/json")


def _metrics_endpoint(metrics: ProxyMetrics) -> Callable[[Request], Awaitable[Response]]:
    async def scrape(request: Request) -> Response:
        body, content_type = metrics.render(request.headers.get("accept", ""))
        return Response(body, headers={"content-type": content_type})

    return scrape


def create_app(
    settings: Settings,
    *,
    keys: Mapping[str, SecretStr] | None = None,
    catalog: Catalog | None = None,
    rng: random.Random | None = None,
    environ: Mapping[str, str] | None = None,
    freeze_gc: bool = False,
) -> Starlette:
    """The proxy app. Reads the catalog (``CATALOG_FILE``) and the champion policy now (a bad one
    fails here, naming the entry) and serves a changed catalog without a restart.

    ``keys`` are provider keys (``load_provider_keys``); those of a catalog's providers not in
    ``keys`` are read from ``environ`` (the process's environment, which does not change while
    it runs), now and for each new catalog. A provider without one is a candidate only when it
    takes no key or the simulator stands in for it (``settings.simulated``). ``freeze_gc``: a
    serving process freezes what its start-up made (``symphony.gc_tuning.freeze_startup``); a
    test's app does not, as frozen objects are never collected in a process that builds many.
    """
    catalog = catalog if catalog is not None else settings.read_catalog()
    given = dict(keys or {})

    scrubber = Scrubber()

    def adapters_for(served: Catalog) -> dict[str, Adapter]:
        read = load_provider_keys(served, environ) if environ is not None else {}
        keys = {**read, **given}
        secrets = [key.get_secret_value() for key in keys.values()]
        install_log_scrubber(secrets)  # logs and provider errors never show a key, old or new
        scrubber.add(secrets)
        return build_adapters(served, settings, keys)

    adapters = adapters_for(catalog)
    decision_ids = _decision_ids(settings)
    gateway = Gateway(
        settings,
        catalog,
        load_champion(settings.policy_file, catalog),
        adapters,
        rng=rng,
        scrubber=scrubber,
        decision_ids=decision_ids,
        adapters_for=adapters_for,
    )
    if not adapters:
        log.warning("no provider has a key or the simulator: every routed request will be refused")
    resources = ResourceSlot()
    openai_api = OpenAIApi(gateway)
    messages_api = MessagesApi(gateway)
    responses_api = ResponsesApi(gateway)
    embeddings_api = EmbeddingsApi(gateway)
    route_api = RouteExecuteApi(gateway)
    feedback_api = FeedbackApi(resources, decision_ids)
    jobs_api = JobsApi(resources, lambda: gateway.catalog, gateway.task)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.auth_disabled:
            log.warning(AUTH_DISABLED_WARNING)
        opened = await Resources.open(settings)
        try:
            await gateway.start(opened)
            resources.fill(opened)
            breakers = BreakerStates(opened.redis, gateway.health, REPLICA)  # the console's breaker view
            breakers.start()
            if freeze_gc:  # a serving process: what start-up made is never walked by a collection again
                freeze_startup()
            try:
                yield
            finally:
                await breakers.close()
                resources.fill(None)
                await gateway.stop()
        finally:
            await opened.close()

    routes = [
        Route("/v1/chat/completions", openai_api.chat_completions, methods=["POST"]),
        Route("/v1/models", openai_api.models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", openai_api.model, methods=["GET"]),
        Route("/v1/responses", responses_api.create, methods=["POST"]),
        Route("/v1/embeddings", embeddings_api.create, methods=["POST"]),
        Route(MESSAGES_PATH, messages_api.create, methods=["POST"]),
        Route(COUNT_TOKENS_PATH, messages_api.count_tokens, methods=["POST"]),
        Route("/v1/route/execute", route_api.execute, methods=["POST"]),
        Route("/v1/feedback", feedback_api.post, methods=["POST"]),
        Route("/v1/jobs", jobs_api.create, methods=["POST"]),
        Route("/v1/jobs/{job_id}", jobs_api.get, methods=["GET"]),
        Route("/v1/jobs/{job_id}", jobs_api.cancel, methods=["DELETE"]),
        Route("/health", _health, methods=["GET"]),
        Route("/metrics", _metrics_endpoint(gateway.prometheus), methods=["GET"]),
    ]
    handlers = {
        errors.ApiError: _api_error,
        HTTPException: _http_error,
        ClientDisconnect: _client_gone,
        Exception: _internal_error,
    }
    app_keys = _key_cache(settings, resources)
    middleware = [
        Middleware(HeaderLimitMiddleware, render=render_error, max_bytes=settings.max_header_bytes),
        Middleware(
            AuthMiddleware,
            authenticator=_authenticator(settings, resources, app_keys),
            render=render_error,
            dispatches=_dispatches(settings, resources, app_keys),
        ),
    ]
    # Off, no request pays for tracing but a check that the observer holds no tracing.
    traced = partial(_tracing, resources) if tracing_on(settings) else None
    observer = Middleware(RequestObserver, metrics=gateway.prometheus, paths=TRACED_PATHS, tracing=traced)
    middleware.insert(0, observer)
    return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware, lifespan=lifespan)


def _tracing(resources: ResourceSlot) -> Tracing | None:
    opened = resources.peek()
    return opened.tracing if opened is not None else None


def _decision_ids(settings: Settings) -> DecisionIds:
    if settings.decision_key is not None:
        return DecisionIds(settings.decision_key.get_secret_value().encode())
    log.warning(
        "DECISION_KEY is not set: this process signs decision ids with a key of its own, so feedback on "
        "them is refused by other replicas; set DECISION_KEY (the same on every replica)"
    )
    return DecisionIds(os.urandom(32))


def _key_cache(settings: Settings, resources: ResourceSlot) -> AppKeyCache | None:
    if settings.auth_disabled:
        return None
    return AppKeyCache(lambda: resources.get().redis, fail_mode=settings.quota_fail_mode)


def _authenticator(
    settings: Settings, resources: ResourceSlot, keys: AppKeyCache | None
) -> Authenticator | None:
    if keys is None:
        return None

    def client() -> aioredis.Redis:
        return resources.get().redis

    return Authenticator(keys, AuthFailures(client, settings.auth_failures_per_minute))


def _dispatches(settings: Settings, resources: ResourceSlot, keys: AppKeyCache | None) -> DispatchCheck:
    """Job dispatches from the scheduler, when this proxy has the dispatcher's token."""
    if settings.dispatcher_token is None:
        return no_dispatches
    return JobDispatches(settings.dispatcher_token.get_secret_value(), resources, lambda: keys)


def app_from_environment() -> Starlette:
    """The app of one of ``PROXY_WORKERS`` processes (uvicorn's factory): settings from the environment."""
    settings = Settings()
    log_to_stderr(settings.log_format)  # a worker process starts with no logging configured
    return _entry_app(settings)


def _entry_app(settings: Settings) -> Starlette:
    """The app of a serving process: where the provider keys (or their ``*_FILE`` secrets) are read, once."""
    return create_app(settings, environ=os.environ, freeze_gc=True)


def run_proxy(settings: Settings) -> None:
    """Serve the proxy on ``settings.proxy_host:settings.proxy_port`` until SIGINT/SIGTERM (blocking).

    With ``settings.proxy_workers`` above 1, that many processes serve the one port, each
    building its app from the environment. uvicorn finishes in-flight requests on SIGTERM,
    then each process's lifespan shutdown publishes its queued events.
    """
    workers = settings.proxy_workers
    # One process serves the app built here; several each build theirs (uvicorn's factory).
    app: Starlette | str = _entry_app(settings) if workers == 1 else f"{__name__}:app_from_environment"
    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers,
        host=settings.proxy_host,
        port=settings.proxy_port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="info",
        log_config=None,  # uvicorn's lines go through the process's handler (LOG_FORMAT)
    )
