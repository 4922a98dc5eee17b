"""The OpenAI-compatible API: ``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /v1/models/{id}``.

The canonical form is this API's own, so answers, streams and provider errors go
back as the bytes the gateway holds. ``model`` is ``auto`` (Symphony routes) or a
catalog model, plain or as ``provider/model`` (pinned). The calling app is the one
its key belongs to (``proxy.edge.auth``); the header ``x-symphony-task`` names the task (a task
name, ``proxy.routing.tasks``; the answer's ``x-symphony-task`` and ``x-symphony-task-table`` say
which routing used).
``GET /v1/models`` lists only the models the caller's key may use.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy import errors
from proxy.adapters.base import Answer, UpstreamFailure
from proxy.api.model_names import model_entry, models_body, pin_for_model
from proxy.attempts.stream_relay import Render
from proxy.edge.auth import Caller, JobGrant, caller_of
from proxy.edge.body import MAX_BODY_BYTES, parse_chat_request, read_limited
from proxy.errors import retry_after_header
from proxy.gateway import Gateway, Outcome
from proxy.routed_request import RoutedRequest
from proxy.routing.candidates import NO_CONSTRAINTS, Constraints
from proxy.routing.tasks import TASK_HEADER
from symphony.app_keys import AppKey
from symphony.jobs import NOT_RUN

JSON = "application/json"


def task_of(gateway: Gateway, request: Request) -> str:
    """The task ``x-symphony-task`` names, checked (``chat`` when none)."""
    return gateway.task(request.headers.get(TASK_HEADER), TASK_HEADER)


def _job_limits(caller: Caller, job: JobGrant, body: dict[str, Any]) -> tuple[Constraints, AppKey | None]:
    """A dispatched job's body must be the job's; it runs on the providers and models the job allows
    (its models narrow the key's allow-list, never widen it)."""
    if body != job.request:
        raise errors.ApiError(
            403,
            f"The body sent for job {job.id} is not the job's request.",
            type_="permission_error",
            code="job_body_mismatch",
        )
    constraints = Constraints(allowed_providers=job.providers)
    key = caller.key
    if not job.models:
        return constraints, key
    if key is None:
        return constraints, AppKey(prefix="", app=caller.app, created_ms=0, models=job.models)
    allowed = tuple(arm for arm in job.models if key.allows(*arm.split("/", 1)))
    return constraints, replace(key, models=allowed or ("none/none",))


class OpenAIFormat:
    """Renders the gateway's canonical results as they are."""

    def answer(self, answer: Answer, outcome: Outcome) -> Response:
        return Response(answer.body, media_type=JSON, headers=outcome.headers())

    def stream_renderer(self, outcome: Outcome) -> Render | None:
        return None

    def failure(self, failure: UpstreamFailure, outcome: Outcome) -> Response:
        headers = {**outcome.headers(), **retry_after_header(failure.retry_after_s)}
        return Response(failure.body, status_code=failure.http_status, media_type=JSON, headers=headers)


OPENAI_FORMAT = OpenAIFormat()


class OpenAIApi:
    def __init__(self, gateway: Gateway, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._gateway = gateway
        self._max_body_bytes = max_body_bytes
        self._models_body = (gateway.catalog, models_body(gateway.catalog, gateway.adapters))

    async def chat_completions(self, request: Request) -> Response:
        data, chat = parse_chat_request(await read_limited(request, self._max_body_bytes))
        pin = pin_for_model(self._gateway.catalog, chat.model)
        caller = caller_of(request)
        constraints, key = NO_CONSTRAINTS, caller.key
        overrides = {"model": chat.model} if pin is not None else {}
        if caller.job is not None:
            constraints, key = _job_limits(caller, caller.job, data)
            overrides |= caller.job.overrides  # the decision says which job it served, and its terms
        routed = RoutedRequest(
            body=data,
            app=caller.app,
            key=key,
            task=caller.job.task if caller.job is not None else task_of(self._gateway, request),
            stream=chat.stream,
            include_usage=chat.include_usage,
            pin=pin,
            constraints=constraints,
            overrides=overrides,
        )
        try:
            return await self._gateway.execute(routed, OPENAI_FORMAT)
        except errors.ApiError as refusal:
            if caller.job is not None and caller.job.withdraw is not None and refusal.code in NOT_RUN:
                await caller.job.withdraw()  # no provider saw it: the dispatcher may send it again
            raise

    async def models(self, request: Request) -> Response:
        key = caller_of(request).key
        if key is None or not key.models:
            return Response(self._all_models(), media_type=JSON)
        body = models_body(self._gateway.catalog, self._gateway.adapters, allows=key.allows)
        return Response(body, media_type=JSON)

    async def model(self, request: Request) -> Response:
        """One model as ``GET /v1/models`` lists it; 404 unless the caller may use it here."""
        name = request.path_params["model_id"]
        key = caller_of(request).key
        allows = key.allows if key is not None and key.models else None
        entry = model_entry(self._gateway.catalog, self._gateway.adapters, name, allows=allows)
        if entry is None:
            raise errors.model_not_found(name)
        return Response(orjson.dumps(entry), media_type=JSON)

    def _all_models(self) -> bytes:
        """Every servable model, made once per catalog served."""
        catalog, body = self._models_body
        if catalog is not self._gateway.catalog:
            catalog = self._gateway.catalog
            body = models_body(catalog, self._gateway.adapters)
            self._models_body = (catalog, body)
        return body
