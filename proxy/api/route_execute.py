"""The native API: ``POST /v1/route/execute``.

The body is a chat-completions request (OpenAI-shaped ``messages`` and parameters)
without ``model``, plus ``task``, ``constraints`` (``max_cost_usd``,
``latency_budget_ms``, ``allowed_providers``) and ``overrides`` (``provider``,
``model``). The answer carries the decision beside the completion::

    {"decision": {"decision_id", "provider", "model", "chosen", "policy",
                  "policy_version", "propensity", "replica", "fallbacks": [{"provider", "model", "status"}]},
     "completion": {... an OpenAI chat.completion ...}}

A stream starts with one ``event: decision`` whose data is that decision, then the
OpenAI chunk events. A failure is ``{"decision": ..., "error": {...}}`` with the
failure's status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from proxy import errors
from proxy.adapters.base import Answer, UpstreamFailure
from proxy.api.openai_api import JSON
from proxy.attempts.stream_relay import Render
from proxy.edge.auth import caller_of
from proxy.edge.body import MAX_BODY_BYTES, parse_object, read_limited, validate
from proxy.errors import retry_after_header
from proxy.gateway import Gateway, Outcome
from proxy.routed_request import RoutedRequest
from proxy.routing.candidates import Constraints, Pin
from proxy.schemas import ChatCompletionRequest, ClosedModel
from symphony.catalog import Catalog

NATIVE_FIELDS = ("task", "constraints", "overrides")


class RouteConstraints(ClosedModel):
    max_cost_usd: float | None = Field(default=None, gt=0)
    latency_budget_ms: float | None = Field(default=None, gt=0)
    allowed_providers: list[str] | None = Field(default=None, min_length=1)


class RouteOverrides(ClosedModel):
    provider: str | None = Field(default=None, min_length=1)
    model: str | None = Field(default=None, min_length=1)


class RouteExecuteRequest(ChatCompletionRequest):
    task: str | None = Field(default=None, min_length=1, max_length=64)  # a task name (proxy.routing.tasks)
    constraints: RouteConstraints = RouteConstraints()
    overrides: RouteOverrides = RouteOverrides()


def _constraints(catalog: Catalog, given: RouteConstraints) -> Constraints:
    allowed = given.allowed_providers
    if allowed is not None:
        unknown = sorted(set(allowed) - set(catalog.providers))
        if unknown:
            raise errors.ApiError(
                400,
                f"constraints.allowed_providers: unknown providers {unknown} "
                f"(known: {', '.join(catalog.providers)}).",
                param="constraints.allowed_providers",
                code="unknown_provider",
            )
    return Constraints(given.max_cost_usd, given.latency_budget_ms, frozenset(allowed) if allowed else None)


def _pin(catalog: Catalog, given: RouteOverrides) -> Pin | None:
    if given.model is not None:
        name = given.model if given.provider is None else f"{given.provider}/{given.model}"
        found = catalog.find_model(name)
        if found is None:
            raise errors.ApiError(
                404,
                f"overrides.model: the model `{name}` is not in the catalog.",
                param="overrides.model",
                code="model_not_found",
            )
        return Pin(*found)
    if given.provider is not None:
        if given.provider not in catalog.providers:
            raise errors.ApiError(
                400,
                f"overrides.provider: unknown provider `{given.provider}` "
                f"(known: {', '.join(catalog.providers)}).",
                param="overrides.provider",
                code="unknown_provider",
            )
        return Pin(provider=given.provider)
    return None


class NativeFormat:
    def answer(self, answer: Answer, outcome: Outcome) -> Response:
        body = b'{"decision":' + orjson.dumps(outcome.summary()) + b',"completion":' + answer.body + b"}"
        return Response(body, media_type=JSON, headers=outcome.headers())

    def stream_renderer(self, outcome: Outcome) -> Render | None:
        decision = b"event: decision\ndata: " + orjson.dumps(outcome.summary()) + b"\n\n"

        async def render(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
            yield decision
            async for event in events:
                yield event

        return render

    def failure(self, failure: UpstreamFailure, outcome: Outcome) -> Response:
        try:
            error: Any = orjson.loads(failure.body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
        if not isinstance(error, dict):
            error = {"message": failure.body.decode("utf-8", "replace"), "type": "api_error"}
        body = orjson.dumps({"decision": outcome.summary(), "error": error})
        headers = {**outcome.headers(), **retry_after_header(failure.retry_after_s)}
        return Response(body, status_code=failure.http_status, media_type=JSON, headers=headers)


NATIVE_FORMAT = NativeFormat()


class RouteExecuteApi:
    def __init__(self, gateway: Gateway, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._gateway = gateway
        self._max_body_bytes = max_body_bytes

    async def execute(self, request: Request) -> Response:
        data = parse_object(await read_limited(request, self._max_body_bytes))
        if "model" in data:
            raise errors.ApiError(
                400, "`model` is not a field of route/execute: pin one with overrides.model.", param="model"
            )
        native = validate(RouteExecuteRequest, data)
        catalog = self._gateway.catalog
        overrides = native.overrides.model_dump(exclude_none=True)
        caller = caller_of(request)
        routed = RoutedRequest(
            body={name: value for name, value in data.items() if name not in NATIVE_FIELDS},
            app=caller.app,
            key=caller.key,
            task=self._gateway.task(native.task, "task"),
            stream=native.stream,
            include_usage=native.include_usage,
            pin=_pin(catalog, native.overrides),
            constraints=_constraints(catalog, native.constraints),
            overrides=overrides,
        )
        return await self._gateway.execute(routed, NATIVE_FORMAT)
