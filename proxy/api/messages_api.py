"""The Anthropic-compatible API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

The request is translated to the canonical form and routed like any other, so any
provider can serve it; the answer, the stream and every error are translated back
to Anthropic's shapes (``proxy.api.messages_translate``, ``proxy.api.messages_stream``), so the ``anthropic``
SDK raises its own exception types. The caller's Symphony key comes as ``x-api-key``
or ``Authorization: Bearer`` (``proxy.edge.auth``); ``anthropic-version`` is accepted;
``model`` is ``auto`` or a catalog model.

``count_tokens`` answers ``{"input_tokens": n}`` for a messages body (no ``max_tokens``): the
proxy's own estimate of the prompt (``TokenEstimate``: characters / 4 and a few per message),
the figure it reserves quota and budget with, not a provider's tokenizer; no provider is called.
"""

from __future__ import annotations

from functools import partial

import orjson
from starlette.requests import Request
from starlette.responses import Response

from proxy import errors
from proxy.adapters.base import Answer, UpstreamFailure
from proxy.api.chunk_stream import translated
from proxy.api.messages_stream import MessagesStream
from proxy.api.messages_translate import (
    MessagesError,
    anthropic_error,
    anthropic_error_body,
    parse_messages_request,
    to_messages_response,
)
from proxy.api.model_names import pin_for_model
from proxy.api.openai_api import JSON, task_of
from proxy.attempts.stream_relay import Render
from proxy.edge.auth import caller_of
from proxy.edge.body import MAX_BODY_BYTES, read_limited
from proxy.errors import retry_after_header
from proxy.gateway import Gateway, Outcome
from proxy.routed_request import RoutedRequest
from proxy.routing.candidates import TokenEstimate

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
# Where errors take Anthropic's shape.
ANTHROPIC_PATHS = frozenset({MESSAGES_PATH, COUNT_TOKENS_PATH})


def anthropic_error_response(error: errors.ApiError) -> Response:
    """An ``ApiError`` in Anthropic's shape; its type follows the status, as Anthropic's does."""
    body = anthropic_error_body(error.status, None, error.message)
    return Response(body, status_code=error.status, media_type=JSON, headers=error.headers)


class AnthropicFormat:
    """Anthropic's shapes; ``model`` in an answer is the model that served it."""

    def answer(self, answer: Answer, outcome: Outcome) -> Response:
        body = to_messages_response(answer.body, outcome.model)
        return Response(body, media_type=JSON, headers=outcome.headers())

    def stream_renderer(self, outcome: Outcome) -> Render | None:
        return translated(partial(MessagesStream, outcome.model))

    def failure(self, failure: UpstreamFailure, outcome: Outcome) -> Response:
        headers = {**outcome.headers(), **retry_after_header(failure.retry_after_s)}
        body = anthropic_error(failure.http_status, failure.body)
        return Response(body, status_code=failure.http_status, media_type=JSON, headers=headers)


ANTHROPIC_FORMAT = AnthropicFormat()


class MessagesApi:
    def __init__(self, gateway: Gateway, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._gateway = gateway
        self._max_body_bytes = max_body_bytes

    async def create(self, request: Request) -> Response:
        raw = await read_limited(request, self._max_body_bytes)
        try:
            messages = parse_messages_request(raw)
            body = messages.to_canonical()
        except MessagesError as exc:
            raise errors.ApiError(exc.status, exc.message) from None
        pin = pin_for_model(self._gateway.catalog, messages.model)
        caller = caller_of(request)
        routed = RoutedRequest(
            body=body,
            app=caller.app,
            key=caller.key,
            task=task_of(self._gateway, request),
            stream=messages.stream,
            include_usage=True,  # Anthropic's events carry usage: the translator needs the usage chunk
            pin=pin,
            overrides={"model": messages.model} if pin is not None else {},
        )
        return await self._gateway.execute(routed, ANTHROPIC_FORMAT)

    async def count_tokens(self, request: Request) -> Response:
        raw = await read_limited(request, self._max_body_bytes)
        try:
            messages = parse_messages_request(raw, counting=True)
            body = messages.to_canonical()
        except MessagesError as exc:
            raise errors.ApiError(exc.status, exc.message) from None
        pin_for_model(self._gateway.catalog, messages.model)  # a 404 for a model not in the catalog
        tokens = TokenEstimate.of(body).prompt_tokens
        return Response(orjson.dumps({"input_tokens": tokens}), media_type=JSON)
