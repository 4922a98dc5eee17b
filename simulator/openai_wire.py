"""The OpenAI chat-completions wire format (OpenAI, Perplexity, Venice, Grok, DeepSeek).

``POST {base}/chat/completions`` with ``Authorization: Bearer <key>``: messages
(system/developer, user with text and image parts, assistant with ``tool_calls``,
tool results), ``tools`` + ``tool_choice`` + ``parallel_tool_calls``,
``response_format`` (json_object / json_schema), ``stop``, ``max_tokens`` /
``max_completion_tokens``, ``temperature``, ``top_p``, ``stream`` +
``stream_options.include_usage``. Rate-limit headers ``x-ratelimit-*``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from simulator.generation import JSON_OBJECT_SCHEMA, Completion, Prompt, Tool, ToolMode, text_of
from simulator.wire import (
    Frame,
    LimitSnapshot,
    Reply,
    SimError,
    decode_json,
    go_duration,
    stream_word,
    validate,
)

DONE = b"data: [DONE]\n\n"
ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 429: "requests"}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None


class Function(_Open):
    name: str = Field(min_length=1, max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict)


class ToolSpec(_Open):
    type: Literal["function"]
    function: Function


class JsonSchemaSpec(_Open):
    name: str
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


class StreamOptions(_Open):
    include_usage: bool = False


class ChatRequest(_Open):
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=1)
    stop: str | list[str] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

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


class OpenAIWire:
    stream_media_type = "text/event-stream"
    server_error_statuses: tuple[int, ...] = (500, 502, 503)

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise SimError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
            )
        return key.strip()

    def parse(self, raw: bytes, path_params: Mapping[str, str], query: Mapping[str, str]) -> Prompt:
        return _prompt(parse_request(raw))

    def body(self, reply: Reply) -> bytes:
        return completion_body(reply)

    def frames(self, reply: Reply) -> Iterator[Frame]:
        return stream_frames(reply)

    def error(self, error: SimError) -> bytes:
        if error.status >= 500:
            return error_body(error.message, type_="server_error", code=error.code)
        type_ = ERROR_TYPES.get(error.status, "invalid_request_error")
        return error_body(error.message, type_=type_, param=error.param, code=error.code)

    def limit_headers(self, snapshot: LimitSnapshot) -> dict[str, str]:
        reset = go_duration(snapshot.reset_in_ms)
        return {
            "x-ratelimit-limit-requests": str(snapshot.requests_limit),
            "x-ratelimit-remaining-requests": str(snapshot.requests_remaining),
            "x-ratelimit-reset-requests": reset,
            "x-ratelimit-limit-tokens": str(snapshot.tokens_limit),
            "x-ratelimit-remaining-tokens": str(snapshot.tokens_remaining),
            "x-ratelimit-reset-tokens": reset,
        }

    def models_body(self, models: list[str], created_ms: int) -> bytes:
        created = created_ms // 1000
        data = [
            {"id": model, "object": "model", "created": created, "owned_by": "system"} for model in models
        ]
        return orjson.dumps({"object": "list", "data": data})


def parse_request(raw: bytes) -> ChatRequest:
    """Parse and check a request body; raise ``SimError`` (400) naming the bad field."""
    request: ChatRequest = validate(ChatRequest, decode_json(raw))
    return request


def _prompt(chat: ChatRequest) -> Prompt:
    tools = tuple(Tool(spec.function.name, spec.function.parameters) for spec in chat.tools or ())
    mode, forced = _tool_choice(chat.tool_choice, tools)
    user_texts = [text_of(message.content) for message in chat.messages if message.role == "user"]
    stop = (chat.stop,) if isinstance(chat.stop, str) else tuple(chat.stop or ())
    return Prompt(
        model=chat.model,
        texts=tuple(text_of(message.content) for message in chat.messages),
        last_user_text=user_texts[-1] if user_texts else "",
        after_tool_result=chat.messages[-1].role in ("tool", "function"),
        tools=tools,
        tool_mode=mode,
        forced_tool=forced,
        parallel_tool_calls=chat.parallel_tool_calls is not False,
        json_schema=_json_schema(chat.response_format),
        stop=stop,
        max_tokens=chat.token_limit,
        stream=chat.stream,
        include_usage=chat.include_usage,
    )


def _tool_choice(choice: str | dict[str, Any] | None, tools: tuple[Tool, ...]) -> tuple[ToolMode, str | None]:
    if choice is None or choice == "auto":
        return "auto", None
    if choice in ("none", "required"):
        return ("none" if choice == "none" else "required"), None
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str) or name not in {tool.name for tool in tools}:
        raise SimError(400, f"tool_choice names no offered function: {name!r}", param="tool_choice")
    return "required", name


def _json_schema(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_schema":
        if response_format.json_schema is None:
            raise SimError(
                400, "response_format.json_schema is required", param="response_format.json_schema"
            )
        return response_format.json_schema.schema_
    return JSON_OBJECT_SCHEMA


def model_not_found(model: str) -> SimError:
    return SimError(
        404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
    )


def _usage(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


def _message(reply: Reply) -> dict[str, Any]:
    completion = reply.completion
    if not completion.tool_calls:
        return {"role": "assistant", "content": completion.content, "refusal": None}
    calls = [
        {
            "id": _call_id(reply, index),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments_json},
        }
        for index, call in enumerate(completion.tool_calls)
    ]
    return {"role": "assistant", "content": None, "refusal": None, "tool_calls": calls}


def _call_id(reply: Reply, index: int) -> str:
    return f"call_{reply.id}{index}"


def completion_body(reply: Reply) -> bytes:
    """A whole ``chat.completion`` object."""
    return orjson.dumps(
        {
            "id": f"chatcmpl-{reply.id}",
            "object": "chat.completion",
            "created": reply.created_ms // 1000,
            "model": reply.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": _message(reply),
                    "logprobs": None,
                    "finish_reason": reply.completion.finish_reason,
                }
            ],
            "usage": _usage(reply.completion),
        }
    )


def stream_frames(reply: Reply) -> Iterator[Frame]:
    """The SSE frames of a streamed completion, each with the number of new tokens it carries.

    Frames: the assistant role, one frame per word (a token) or, for tool calls, a
    frame naming each call and one per word of its arguments; the finish reason; then
    (with ``stream_options.include_usage``) a frame with empty ``choices`` and the usage;
    ``[DONE]``. With the usage frame every other chunk carries ``"usage": null``, as OpenAI does.
    """
    completion, include_usage = reply.completion, reply.include_usage
    head = orjson.dumps(
        {
            "id": f"chatcmpl-{reply.id}",
            "object": "chat.completion.chunk",
            "created": reply.created_ms // 1000,
            "model": reply.model,
        }
    )
    # Every chunk is the same object with a different choice; render the fixed parts once.
    prefix = b"data: " + head[:-1] + b',"system_fingerprint":null,"choices":['
    suffix = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return prefix + orjson.dumps(choice) + suffix

    first_content = "" if not completion.tool_calls else None
    yield chunk({"role": "assistant", "content": first_content, "refusal": None}), 0
    for index, word in enumerate(completion.words):
        yield chunk({"content": stream_word(index, word)}), 1
    for index, call in enumerate(completion.tool_calls):
        named = {"index": index, "id": _call_id(reply, index), "type": "function"}
        yield chunk({"tool_calls": [{**named, "function": {"name": call.name, "arguments": ""}}]}), 0
        for position, word in enumerate(call.arguments_json.split(" ")):
            fragment = {"index": index, "function": {"arguments": stream_word(position, word)}}
            yield chunk({"tool_calls": [fragment]}), 1
    yield chunk({}, completion.finish_reason), 0
    if include_usage:
        yield prefix + b'],"usage":' + orjson.dumps(_usage(completion)) + b"}\n\n", 0
    yield DONE, 0
