"""Deferrable jobs: ``POST /v1/jobs``, ``GET /v1/jobs/{id}``, ``DELETE /v1/jobs/{id}``.

A job is a chat-completions request the app can wait for; the scheduler's dispatcher sends it
through ``/v1/chat/completions`` at the slot its plan gives it (``symphony.jobs`` holds the
records and their states). The body of ``POST``::

    {"request": {...an OpenAI chat-completions body, not streamed...},
     "deadline_ms": <event time, UTC ms, in the future, within 30 days>,
     "tokens": <estimated tokens in all, 1 to 2,000,000>,
     "providers": ["openai", ...] | "models": ["openai/gpt-4o-mini", ...],   (optional, not both)
     "task": "summarise"}   (optional: the task it is routed and learned as, a task name,
                            like x-symphony-task; "chat")

The answer is 201 with the job (``Job.public``); ``GET`` gives its state and, when done,
``result`` (the chat.completion), when failed, ``error``. ``DELETE`` cancels a job that is
queued or planned (200 with the job; 409 once it runs or has ended). Only the app that created
a job sees it: another app's id, a malformed id and an unknown one are the same 404. Bad input
is a 400 naming the field (``request.messages.0.role``, ``deadline_ms``, ``providers.1``...);
a job its app key may not run (no model of it allowed) is a 403; a 503 when Redis does not answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from proxy import errors
from proxy.api.openai_api import JSON
from proxy.edge.auth import Caller, caller_of
from proxy.edge.body import parse_object, read_limited, validate
from proxy.edge.job_dispatch import jobs_unavailable
from proxy.resources import ResourceSlot
from proxy.schemas import ChatCompletionRequest, ClosedModel
from symphony.catalog import Catalog
from symphony.jobs import Job, JobStore, new_job_id, well_formed
from symphony.redis_server import REDIS_ERRORS

JOB_MAX_BYTES = 1 << 20
MAX_JOB_TOKENS = 2_000_000
MAX_DEADLINE_AHEAD_MS = 30 * 24 * 3_600_000
AUTO = "auto"


class JobSpec(ClosedModel):
    request: dict[str, Any]
    deadline_ms: int = Field(gt=0)
    tokens: int = Field(gt=0, le=MAX_JOB_TOKENS)
    providers: list[str] | None = Field(default=None, min_length=1)
    models: list[str] | None = Field(default=None, min_length=1)
    task: str | None = Field(default=None, min_length=1, max_length=64)


def _bad(param: str, message: str, code: str = "invalid_value") -> errors.ApiError:
    return errors.ApiError(400, message, param=param, code=code)


def _not_found(job_id: str) -> errors.ApiError:
    return errors.ApiError(404, f"No job {job_id} exists for this app.", param="id", code="job_not_found")


class JobsApi:
    def __init__(
        self,
        resources: ResourceSlot,
        catalog: Callable[[], Catalog],
        task: Callable[[str | None, str], str] = lambda name, param: name or "chat",
    ) -> None:
        """``catalog``: the catalog being served (it changes when ``CATALOG_FILE`` does); ``task``
        checks a job's task (``Gateway.task``)."""
        self._resources = resources
        self._current_catalog = catalog
        self._task = task

    @property
    def _catalog(self) -> Catalog:
        return self._current_catalog()

    def _store(self) -> JobStore:
        return JobStore(self._resources.get().redis)

    async def create(self, request: Request) -> Response:
        spec = validate(JobSpec, parse_object(await read_limited(request, JOB_MAX_BYTES)))
        caller = caller_of(request)
        now = self._resources.get().clock.now_ms()
        chat = validate(ChatCompletionRequest, spec.request, ("request",))
        if chat.stream:
            raise _bad(
                "request.stream", "A job's answer is stored, not streamed: `request.stream` must be false."
            )
        self._check_deadline(spec.deadline_ms, now)
        task = self._task(spec.task, "task")
        providers = self._providers(spec.providers)
        models = self._models(spec.models)
        if providers and models:
            raise _bad("models", "`models`: give `providers` or `models`, not both.")
        self._check_pin(chat.model, providers, models)
        self._check_key(caller, providers, models)
        job = Job(
            id=new_job_id(now),
            app=caller.app,
            request=spec.request,
            deadline_ms=spec.deadline_ms,
            tokens=spec.tokens,
            providers=providers,
            models=models,
            key_prefix=caller.key.prefix if caller.key is not None else "",
            task=task,
            created_ms=now,
            updated_ms=now,
        )
        try:
            await self._store().create(job)
        except REDIS_ERRORS:
            raise jobs_unavailable() from None
        return Response(orjson.dumps(job.public()), status_code=201, media_type=JSON)

    async def get(self, request: Request) -> Response:
        job = await self._own(request)
        return Response(orjson.dumps(job.public()), media_type=JSON)

    async def cancel(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        caller = caller_of(request)
        if not well_formed(job_id):
            raise _not_found(job_id)
        try:
            outcome = await self._store().cancel(job_id, caller.app, self._resources.get().clock.now_ms())
        except REDIS_ERRORS:
            raise jobs_unavailable() from None
        if outcome == "missing":
            raise _not_found(job_id)
        if outcome != "cancelled":
            raise errors.ApiError(
                409,
                f"Job {job_id} is {outcome}: only a queued or planned job can be cancelled.",
                param="id",
                code="job_not_cancellable",
            )
        return await self.get(request)

    async def _own(self, request: Request) -> Job:
        job_id = request.path_params["job_id"]
        try:
            job = await self._store().get(job_id) if well_formed(job_id) else None
        except REDIS_ERRORS:
            raise jobs_unavailable() from None
        if job is None or job.app != caller_of(request).app:
            raise _not_found(job_id)
        return job

    def _check_deadline(self, deadline_ms: int, now: int) -> None:
        if deadline_ms <= now:
            raise _bad("deadline_ms", f"`deadline_ms` {deadline_ms} is not in the future (now is {now}).")
        if deadline_ms > now + MAX_DEADLINE_AHEAD_MS:
            raise _bad(
                "deadline_ms", f"`deadline_ms` {deadline_ms} is more than 30 days ahead (now is {now})."
            )

    def _providers(self, given: list[str] | None) -> tuple[str, ...]:
        for i, name in enumerate(given or ()):
            if name not in self._catalog.providers:
                known = ", ".join(self._catalog.providers)
                raise _bad(
                    f"providers.{i}",
                    f"`providers.{i}`: unknown provider `{name}` (known: {known}).",
                    "unknown_provider",
                )
        return tuple(dict.fromkeys(given or ()))

    def _models(self, given: list[str] | None) -> tuple[str, ...]:
        arms = []
        for i, name in enumerate(given or ()):
            found = self._catalog.find_model(name)
            if found is None:
                raise _bad(
                    f"models.{i}",
                    f"`models.{i}`: unknown model `{name}` (see GET /v1/models).",
                    "model_not_found",
                )
            arms.append("/".join(found))
        return tuple(dict.fromkeys(arms))

    def _check_pin(self, model: str, providers: tuple[str, ...], models: tuple[str, ...]) -> None:
        if model == AUTO:
            return
        found = self._catalog.find_model(model)
        if found is None:
            raise _bad(
                "request.model",
                f"`request.model`: unknown model `{model}` (use `auto` or a model of GET /v1/models).",
            )
        arm = "/".join(found)
        if (providers and found[0] not in providers) or (models and arm not in models):
            raise _bad(
                "request.model", f"`request.model` {model} is outside the job's allowed providers or models."
            )

    def _check_key(self, caller: Caller, providers: tuple[str, ...], models: tuple[str, ...]) -> None:
        key = caller.key
        if key is None or not key.models:
            return
        arms = [
            (provider, model)
            for provider, spec in self._catalog.providers.items()
            for model in spec.models
            if (not providers or provider in providers) and (not models or f"{provider}/{model}" in models)
        ]
        if not any(key.allows(provider, model) for provider, model in arms):
            raise errors.ApiError(
                403,
                f"The key of app `{key.app}` may use none of the job's models; "
                f"it may use: {', '.join(key.models)}.",
                type_="permission_error",
                param="models" if models else "providers",
                code="model_not_allowed",
            )
