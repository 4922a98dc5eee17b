"""The OpenAI Responses API, stateless: ``POST /v1/responses`` (the SDK's ``client.responses.create``).

The request is translated to the canonical form (``proxy.api.responses_translate``) and routed
like a chat completion, so any provider can serve it, with the same task header, pins, key
allow-lists, budgets, quotas and fallbacks; the answer and the stream are translated back
(``proxy.api.responses_stream``), and errors are OpenAI's shape, which the ``openai`` SDK
raises as its own exceptions.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from proxy.adapters.base import Answer, UpstreamFailure
from proxy.api.chunk_stream import translated
from proxy.api.model_names import pin_for_model
from proxy.api.openai_api import JSON, task_of
from proxy.api.responses_stream import ResponsesStream
from proxy.api.responses_translate import ResponsesRequest, refuse_state, to_response
from proxy.attempts.stream_relay import Render
from proxy.edge.auth import caller_of
from proxy.edge.body import MAX_BODY_BYTES, parse_object, read_limited, validate
from proxy.errors import retry_after_header
from proxy.gateway import Gateway, Outcome
from proxy.routed_request import RoutedRequest


class ResponsesFormat:
    """Responses shapes; ``model`` in an answer is the model that served it."""

    def __init__(self, echoed: dict[str, Any]) -> None:
        self._echoed = echoed

    def answer(self, answer: Answer, outcome: Outcome) -> Response:
        body = to_response(answer.body, outcome.model, self._echoed)
        return Response(body, media_type=JSON, headers=outcome.headers())

    def stream_renderer(self, outcome: Outcome) -> Render | None:
        return translated(partial(ResponsesStream, outcome.model, self._echoed))

    def failure(self, failure: UpstreamFailure, outcome: Outcome) -> Response:
        headers = {**outcome.headers(), **retry_after_header(failure.retry_after_s)}
        return Response(failure.body, status_code=failure.http_status, media_type=JSON, headers=headers)


class ResponsesApi:
    def __init__(self, gateway: Gateway, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._gateway = gateway
        self._max_body_bytes = max_body_bytes

    async def create(self, request: Request) -> Response:
        data = parse_object(await read_limited(request, self._max_body_bytes))
        refuse_state(data)
        responses = validate(ResponsesRequest, data)
        body = responses.to_canonical()
        pin = pin_for_model(self._gateway.catalog, responses.model)
        caller = caller_of(request)
        routed = RoutedRequest(
            body=body,
            app=caller.app,
            key=caller.key,
            task=task_of(self._gateway, request),
            stream=responses.stream,
            include_usage=True,  # response.completed carries the usage
            pin=pin,
            overrides={"model": responses.model} if pin is not None else {},
        )
        return await self._gateway.execute(routed, ResponsesFormat(responses.echoed()))
