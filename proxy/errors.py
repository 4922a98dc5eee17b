"""Errors answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Handlers raise ``ApiError``; the app turns it into a response. Bad input is always
a 4xx whose message and ``param`` name the field (``messages.0.role``). The body is
built by ``error_body``, the adapters' (``proxy.adapters.failures``), so the proxy has
one builder for this shape.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response

from proxy.adapters.failures import error_body as error_body

INVALID_REQUEST = "invalid_request_error"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> Response:
        return Response(
            self.body(), status_code=self.status, media_type="application/json", headers=self.headers
        )


def invalid_json() -> ApiError:
    return ApiError(400, "We could not parse the JSON body of your request: it is not valid JSON.")


def not_an_object() -> ApiError:
    return ApiError(400, "The request body must be a JSON object.", code="invalid_type")


def body_too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"The request body is larger than the limit of {limit} bytes.", code="request_too_large"
    )


def not_started() -> ApiError:
    """A request before the app's lifespan has started the proxy, or after it stopped it."""
    return ApiError(503, "The proxy is not started.", type_="api_error", code="not_ready")


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """``retry-after`` in whole seconds, rounded up (at least 1), as SDKs read it; nothing when unknown."""
    return {} if seconds is None else {"retry-after": str(max(1, math.ceil(seconds)))}


def error_message(body: bytes) -> str:
    """The ``error.message`` of a canonical error body (the body itself if it has none)."""
    try:
        error: Any = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str):
        return message
    return body.decode("utf-8", "replace")[:500]


def field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def from_validation(exc: ValidationError, within: tuple[int | str, ...] = ()) -> ApiError:
    """The first validation error, as OpenAI would word it, naming the field (under ``within``,
    for a body nested in another: ``request.messages.0.role``)."""
    error: Any = exc.errors(include_url=False)[0]
    param = field_path((*within, *error["loc"]))
    kind: str = error["type"]
    if kind == "missing":
        return ApiError(
            400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    if kind.endswith("_type") or kind in {"int_from_float", "model_attributes_type"}:
        return ApiError(400, f"Invalid type for '{param}': {error['msg']}.", param=param, code="invalid_type")
    if kind == "one_choice":
        return ApiError(400, f"'{param}': {error['msg']}.", param=param, code="unsupported_parameter")
    return ApiError(400, f"Invalid value for '{param}': {error['msg']}.", param=param, code="invalid_value")
