"""Reading and checking a request body: size limit, JSON object, schema."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from proxy import errors
from proxy.schemas import ChatCompletionRequest

MAX_BODY_BYTES = 1 << 20  # 1 MiB
# An oversized body that declares its length is refused before it is read; one that
# does not is read (and discarded) up to this much so the client sees the 413.
MAX_DRAIN_BYTES = 16 << 20

ModelT = TypeVar("ModelT", bound=BaseModel)


async def read_limited(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, or ``ApiError`` 413 when it is larger than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            if size > MAX_DRAIN_BYTES:
                break
            chunks.clear()
            continue
        chunks.append(chunk)
    if size > limit:
        raise errors.body_too_large(limit)
    return b"".join(chunks)


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; ``ApiError`` 400 when it is not JSON or not an object."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.invalid_json() from None
    if not isinstance(data, dict):
        raise errors.not_an_object()
    return data


def validate(model: type[ModelT], data: dict[str, Any], within: tuple[int | str, ...] = ()) -> ModelT:
    """``data`` checked against ``model``; ``ApiError`` 400 naming the first bad field (under ``within``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.from_validation(exc, within) from None


def parse_chat_request(raw: bytes) -> tuple[dict[str, Any], ChatCompletionRequest]:
    """The body as a dict (to forward) and as a checked request; ``ApiError`` 400 if bad."""
    data = parse_object(raw)
    return data, validate(ChatCompletionRequest, data)
