"""The OpenAI chat-completions wire format, as the official ``openai`` SDK expects it.

Pure functions, no I/O: parse a request, render a whole completion, render the
server-sent events of a streamed one, render an error. The app decides *when* each
streamed frame is sent (latency); this module decides *what* is sent. Other wire
formats (Anthropic, Gemini) get a sibling module with the same shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from symphony.sim.generation import Completion

DONE = b"data: [DONE]\n\n"


class WireError(Exception):
    """A request the simulator refuses, with the OpenAI error fields to answer with."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> bytes:
        return error_body(self.message, param=self.param, code=self.code)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: Any = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` (the current name) or else ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def error_body(
    message: str, *, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def parse_request(raw: bytes) -> ChatRequest:
    """Parse and check a request body; raise ``WireError`` (400) naming the bad field."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise WireError(400, "We could not parse the JSON body of your request.") from None
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"]) or None
        raise WireError(400, f"Invalid value for '{param}': {error['msg']}", param=param) from None


def model_not_found(model: str) -> WireError:
    return WireError(
        404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
    )


def _usage(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


def completion_body(completion_id: str, created: int, model: str, completion: Completion) -> bytes:
    """A whole ``chat.completion`` object."""
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": completion.finish_reason,
                }
            ],
            "usage": _usage(completion),
        }
    )


def stream_frames(
    completion_id: str, created: int, model: str, completion: Completion, *, include_usage: bool
) -> Iterator[tuple[bytes, bool]]:
    """The SSE frames of a streamed completion, each with whether it carries a new token.

    Frames: the assistant role, one frame per word (a token), the finish reason, then
    (with ``include_usage``) a frame with empty ``choices`` and the usage, then ``[DONE]``.
    With ``include_usage`` every other chunk carries ``"usage": null``, as OpenAI does.
    """
    head = orjson.dumps(
        {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    )
    # Every chunk is the same object with a different choice; render the fixed parts once.
    prefix = b"data: " + head[:-1] + b',"system_fingerprint":null,"choices":['
    suffix = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return prefix + orjson.dumps(choice) + suffix

    yield chunk({"role": "assistant", "content": "", "refusal": None}), False
    for index, word in enumerate(completion.words):
        yield chunk({"content": word if index == 0 else " " + word}), True
    yield chunk({}, completion.finish_reason), False
    if include_usage:
        yield prefix + b'],"usage":' + orjson.dumps(_usage(completion)) + b"}\n\n", False
    yield DONE, False


def models_body(provider: str, models: list[str], created: int) -> bytes:
    """The ``GET /v1/models`` list."""
    return orjson.dumps(
        {
            "object": "list",
            "data": [
                {"id": model, "object": "model", "created": created, "owned_by": provider} for model in models
            ],
        }
    )
