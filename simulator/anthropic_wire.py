"""The Anthropic Messages wire format, as the official ``anthropic`` SDK expects it.

``POST {base}/messages`` with ``x-api-key`` (or, as the SDK's newer releases send
it, ``Authorization: Bearer``) and ``anthropic-version`` (a date): ``system``
(a string or text blocks), messages of content blocks (text, image, tool_use,
tool_result, document), ``tools`` + ``tool_choice`` (auto / any / tool / none,
``disable_parallel_tool_use``), ``output_config.format`` (a JSON schema),
``stop_sequences``, ``max_tokens`` (required), ``temperature`` and ``top_p`` in
[0, 1]. Answers are ``message`` objects; streams are the named SSE events
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
(``text_delta`` / ``input_json_delta``), ``content_block_stop``, ``message_delta``
and ``message_stop``. Rate-limit headers ``anthropic-ratelimit-*`` (RFC 3339 resets).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from simulator.generation import Completion, Prompt, Tool, ToolMode
from simulator.wire import Frame, LimitSnapshot, Reply, SimError, decode_json, sse, stream_word, validate
from symphony.clock import utc_datetime

API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")  # "2023-06-01"; newer SDKs send newer dates
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextBlock(_Open):
    type: Literal["text"]
    text: str


class ImageSource(_Open):
    type: Literal["base64", "url", "file"]


class ImageBlock(_Open):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(_Open):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Open):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] | None = None
    is_error: bool | None = None


class DocumentBlock(_Open):
    type: Literal["document"]
    source: dict[str, Any]


Block = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | DocumentBlock, Field(discriminator="type")
]


class Message(_Open):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class ToolSpec(_Open):
    name: str = Field(min_length=1, max_length=128)
    input_schema: dict[str, Any]


class ToolChoice(_Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class OutputFormat(_Open):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Open):
    format: OutputFormat | None = None


class MessagesRequest(_Open):
    model: str
    max_tokens: int = Field(ge=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoice | None = None
    output_config: OutputConfig | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool = False


def error_body(status: int, message: str) -> bytes:
    type_ = ERROR_TYPES.get(status, "api_error")
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})


class AnthropicWire:
    stream_media_type = "text/event-stream"
    server_error_statuses: tuple[int, ...] = (500, 529)

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" else ""
        key = headers.get("x-api-key", "").strip() or bearer
        if not key:
            raise SimError(401, "x-api-key header is required")
        version = headers.get("anthropic-version", "")
        if not version:
            raise SimError(400, "anthropic-version: header is required", param="anthropic-version")
        if not API_VERSION.fullmatch(version):
            raise SimError(
                400, f"anthropic-version: {version!r} is not a valid version", param="anthropic-version"
            )
        return key

    def parse(self, raw: bytes, path_params: Mapping[str, str], query: Mapping[str, str]) -> Prompt:
        request: MessagesRequest = validate(MessagesRequest, decode_json(raw))
        return _prompt(request)

    def body(self, reply: Reply) -> bytes:
        completion = reply.completion
        message = _message_head(reply) | {
            "content": _content(reply),
            "stop_reason": _stop_reason(completion),
            "stop_sequence": completion.stop_sequence,
            "usage": {
                "input_tokens": completion.prompt_tokens,
                "output_tokens": completion.completion_tokens,
            },
        }
        return orjson.dumps(message)

    def frames(self, reply: Reply) -> Iterator[Frame]:
        return stream_frames(reply)

    def error(self, error: SimError) -> bytes:
        return error_body(error.status, error.message)

    def limit_headers(self, snapshot: LimitSnapshot) -> dict[str, str]:
        reset = utc_datetime(snapshot.reset_at_ms).strftime("%Y-%m-%dT%H:%M:%SZ")
        counts = {
            "requests": (snapshot.requests_limit, snapshot.requests_remaining),
            "tokens": (snapshot.tokens_limit, snapshot.tokens_remaining),
            "input-tokens": (snapshot.tokens_limit, snapshot.input_tokens_remaining),
            "output-tokens": (snapshot.tokens_limit, snapshot.output_tokens_remaining),
        }
        headers: dict[str, str] = {}
        for name, (limit, remaining) in counts.items():
            headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(remaining)
            headers[f"anthropic-ratelimit-{name}-reset"] = reset
        return headers

    def models_body(self, models: list[str], created_ms: int) -> bytes:
        created = utc_datetime(created_ms).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = [
            {"type": "model", "id": model, "display_name": model, "created_at": created} for model in models
        ]
        first, last = (models[0], models[-1]) if models else (None, None)
        return orjson.dumps({"data": data, "has_more": False, "first_id": first, "last_id": last})


def _text(content: str | list[Any] | None) -> str:
    """The text a message carries: its text blocks and the text of its tool results."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or ():
        if isinstance(block, TextBlock):
            parts.append(block.text)
        elif isinstance(block, ToolResultBlock):
            parts.append(_text(block.content))
    return "".join(parts)


def _user_text(message: Message) -> str:
    if isinstance(message.content, str):
        return message.content
    return "".join(block.text for block in message.content if isinstance(block, TextBlock))


def _prompt(request: MessagesRequest) -> Prompt:
    tools = tuple(Tool(spec.name, spec.input_schema) for spec in request.tools or ())
    mode, forced, parallel = _tool_choice(request.tool_choice, tools)
    system = [_text(request.system)] if request.system else []
    users = [message for message in request.messages if message.role == "user"]
    last = request.messages[-1]
    ends_with_result = not isinstance(last.content, str) and any(
        isinstance(block, ToolResultBlock) for block in last.content
    )
    output_format = request.output_config.format if request.output_config else None
    return Prompt(
        model=request.model,
        texts=tuple(system + [_text(message.content) for message in request.messages]),
        last_user_text=_user_text(users[-1]) if users else "",
        after_tool_result=last.role == "user" and ends_with_result,
        tools=tools,
        tool_mode=mode,
        forced_tool=forced,
        parallel_tool_calls=parallel,
        json_schema=output_format.schema_ if output_format else None,
        stop=tuple(request.stop_sequences or ()),
        max_tokens=request.max_tokens,
        stream=request.stream,
    )


def _tool_choice(choice: ToolChoice | None, tools: tuple[Tool, ...]) -> tuple[ToolMode, str | None, bool]:
    if choice is None:
        return "auto", None, True
    parallel = not choice.disable_parallel_tool_use
    if choice.type == "tool":
        if choice.name not in {tool.name for tool in tools}:
            raise SimError(400, f"tool_choice.name: no tool named {choice.name!r}", param="tool_choice.name")
        return "required", choice.name, parallel
    mode: ToolMode = {"auto": "auto", "any": "required", "none": "none"}[choice.type]  # type: ignore[assignment]
    return mode, None, parallel


def _stop_reason(completion: Completion) -> str:
    if completion.stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS[completion.finish_reason]


def _tool_use_id(reply: Reply, index: int) -> str:
    return f"toolu_{reply.id}{index}"


def _content(reply: Reply) -> list[dict[str, Any]]:
    completion = reply.completion
    if completion.tool_calls:
        return [
            {"type": "tool_use", "id": _tool_use_id(reply, index), "name": call.name, "input": call.arguments}
            for index, call in enumerate(completion.tool_calls)
        ]
    return [{"type": "text", "text": completion.content}]


def _message_head(reply: Reply) -> dict[str, Any]:
    return {"id": f"msg_{reply.id}", "type": "message", "role": "assistant", "model": reply.model}


def stream_frames(reply: Reply) -> Iterator[Frame]:
    """The named SSE events of a streamed message, each with the number of new tokens it carries."""
    completion = reply.completion
    start = _message_head(reply) | {
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": completion.prompt_tokens, "output_tokens": 1},
    }
    yield sse({"type": "message_start", "message": start}, "message_start"), 0
    yield sse({"type": "ping"}, "ping"), 0
    if completion.tool_calls:
        for index, call in enumerate(completion.tool_calls):
            block = {"type": "tool_use", "id": _tool_use_id(reply, index), "name": call.name, "input": {}}
            pieces = [("input_json_delta", "partial_json", p) for p in call.arguments_json.split(" ")]
            yield from _block(index, block, pieces)
    else:
        pieces = [("text_delta", "text", word) for word in completion.words]
        yield from _block(0, {"type": "text", "text": ""}, pieces)
    delta = {"stop_reason": _stop_reason(completion), "stop_sequence": completion.stop_sequence}
    usage = {"output_tokens": completion.completion_tokens}
    yield sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta"), 0
    yield sse({"type": "message_stop"}, "message_stop"), 0


def _block(index: int, block: dict[str, Any], pieces: list[tuple[str, str, str]]) -> Iterator[Frame]:
    """One content block: its start, one delta per word (a token), its stop."""
    yield (
        sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start"),
        0,
    )
    for position, (kind, field, word) in enumerate(pieces):
        delta = {"type": kind, field: stream_word(position, word)}
        yield sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta"), 1
    yield sse({"type": "content_block_stop", "index": index}, "content_block_stop"), 0
