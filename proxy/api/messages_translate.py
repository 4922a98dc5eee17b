"""Anthropic's Messages API as an inbound format: ``POST /v1/messages`` in, canonical form inside.

``parse_messages_request`` checks a body the way Anthropic does (strict types, no
unknown fields, a 400 whose message names the field, e.g. ``messages.0.content.1.source``);
``MessagesRequest.to_canonical`` turns it into a canonical (OpenAI) request, the reverse
of ``proxy.adapters.anthropic``; ``to_messages_response`` turns a canonical answer into
an Anthropic ``message``; ``anthropic_error_body`` and ``anthropic_error`` render errors
so the ``anthropic`` SDK raises its own exception types. Streams: ``messages_stream``.

``output_config.format`` (structured output) becomes ``response_format`` json_schema.
What the canonical form cannot carry is refused, not dropped: extended thinking,
effort levels, images inside tool results, documents and server tools. A tool result with
``is_error`` reaches the model as text that starts with ``Error:``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from proxy.adapters.failures import ERROR_TYPES as CANONICAL_ERROR_TYPES
from proxy.adapters.failures import error_type

# Anthropic's error types by HTTP status, read with ``proxy.adapters.failures.error_type(status,
# ERROR_TYPES)``: the canonical table's (its names are Anthropic's) plus timeout_error for a 504;
# api_error is listed too, so that the values name every Anthropic type (``messages_stream`` reads them).
ERROR_TYPES: Mapping[int, str] = {**CANONICAL_ERROR_TYPES, 500: "api_error", 504: "timeout_error"}
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Pydantic names the member of a tagged union in an error's location; Anthropic does not.
_UNION_TAGS = frozenset(
    {"text", "image", "tool_use", "tool_result", "base64", "url", "auto", "any", "tool", "none"}
)
_TAGGED_FIELDS = frozenset({"source", "tool_choice"})


class MessagesError(Exception):
    """A request the endpoint refuses: HTTP status, Anthropic error type, a message naming the field."""

    def __init__(self, status: int, message: str, *, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_ or error_type(status, ERROR_TYPES)
        self.message = message

    def body(self) -> bytes:
        return anthropic_error_body(self.status, self.type, self.message)


def anthropic_error_body(status: int, type_: str | None, message: str) -> bytes:
    """``{"type": "error", "error": {"type", "message"}}``; the type follows ``status`` if not given."""
    return orjson.dumps(
        {"type": "error", "error": {"type": type_ or error_type(status, ERROR_TYPES), "message": message}}
    )


def anthropic_error(status: int, canonical_body: bytes) -> bytes:
    """A canonical (OpenAI-shaped) error body, re-rendered as Anthropic's for the same status."""
    try:
        error = orjson.loads(canonical_body).get("error")
        message = error["message"] if isinstance(error.get("message"), str) else None
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        message = None
    return anthropic_error_body(status, None, message or f"Upstream error (HTTP {status}).")


# --- the request --------------------------------------------------------------------------------


def _text_blocks(value: object) -> object:
    """A bare string where Anthropic allows one stands for a single text block."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list):
        raise ValueError("Input should be a string or a list of content blocks")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class CacheControl(_Strict):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlock(_Strict):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class Base64Source(_Strict):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class UrlSource(_Strict):
    type: Literal["url"]
    url: str = Field(pattern=r"^https?://")


class ImageBlock(_Strict):
    type: Literal["image"]
    source: Annotated[Base64Source | UrlSource, Field(discriminator="type")]
    cache_control: CacheControl | None = None


class ToolUseBlock(_Strict):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]
    cache_control: CacheControl | None = None
    caller: dict[str, Any] | None = None  # who made the call, as Anthropic reports it; not forwarded


class ToolResultBlock(_Strict):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: Annotated[list[TextBlock], BeforeValidator(_text_blocks)] = Field(default_factory=list)
    is_error: bool = False
    cache_control: CacheControl | None = None


Block = Annotated[TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


class Message(_Strict):
    role: Literal["user", "assistant"]
    content: Annotated[list[Block], BeforeValidator(_text_blocks)]


class Tool(_Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: CacheControl | None = None


class ToolChoiceSimple(_Strict):
    type: Literal["auto", "any", "none"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Strict):
    type: Literal["tool"]
    name: str = Field(min_length=1)
    disable_parallel_tool_use: bool | None = None


class Metadata(_Strict):
    user_id: str | None = None


class JsonOutputFormat(_Strict):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Strict):
    format: JsonOutputFormat | None = None
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None


class Thinking(_Strict):
    type: Literal["enabled", "disabled"]
    budget_tokens: int | None = None


class MessagesRequest(_Strict):
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[Message] = Field(min_length=1)
    system: Annotated[list[TextBlock], BeforeValidator(_text_blocks)] = Field(default_factory=list)
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[Tool] | None = None
    tool_choice: Annotated[ToolChoiceSimple | ToolChoiceTool, Field(discriminator="type")] | None = None
    metadata: Metadata | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    service_tier: Literal["auto", "standard_only"] | None = None  # a billing choice: not forwarded
    cache_control: CacheControl | None = None  # a caching hint: not forwarded

    def to_canonical(self) -> dict[str, Any]:
        """The canonical (OpenAI chat-completions) request for this one."""
        if self.thinking is not None and self.thinking.type == "enabled":
            raise MessagesError(400, "thinking: extended thinking is not supported by this endpoint.")
        if self.output_config is not None and self.output_config.effort is not None:
            raise MessagesError(
                400, "output_config.effort: effort levels are not supported by this endpoint."
            )
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": "".join(block.text for block in self.system)})
        for index, message in enumerate(self.messages):
            messages.extend(_canonical_messages(message, index))
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens}
        optional = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        body.update({name: value for name, value in optional.items() if value is not None})
        if self.stop_sequences:
            body["stop"] = self.stop_sequences
        if self.stream:
            # The usage chunk gives message_delta its token counts.
            body.update(stream=True, stream_options={"include_usage": True})
        if self.metadata is not None and self.metadata.user_id is not None:
            body["user"] = self.metadata.user_id
        body.update(self._canonical_tools())
        if self.output_config is not None and self.output_config.format is not None:
            schema = self.output_config.format.schema_
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema},
            }
        return body

    def _canonical_tools(self) -> dict[str, Any]:
        if not self.tools:
            return {}
        tools = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.input_schema,
                },
            }
            for tool in self.tools
        ]
        out: dict[str, Any] = {"tools": tools}
        choice = self.tool_choice
        if choice is None:
            return out
        if isinstance(choice, ToolChoiceTool):
            out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        else:
            out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
        if choice.disable_parallel_tool_use:
            out["parallel_tool_calls"] = False
        return out


def _canonical_messages(message: Message, index: int) -> list[dict[str, Any]]:
    """One Anthropic turn as canonical messages: tool results first (one ``tool`` message each)."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            source = block.source
            url = (
                source.url
                if isinstance(source, UrlSource)
                else f"data:{source.media_type};base64,{source.data}"
            )
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif isinstance(block, ToolUseBlock):
            arguments = orjson.dumps(block.input).decode()
            calls.append(
                {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}}
            )
        else:
            text = "".join(part.text for part in block.content)
            out.append(
                {"role": "tool", "tool_call_id": block.tool_use_id, "content": _result_text(block, text)}
            )
    if message.role == "assistant":
        if any(part["type"] != "text" for part in parts):
            raise MessagesError(400, f"messages.{index}.content: images are not allowed in assistant turns.")
        text = "".join(part["text"] for part in parts)
        if text or calls:
            out.append(
                {"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})}
            )
    elif calls:
        raise MessagesError(400, f"messages.{index}.content: tool_use blocks belong in assistant turns.")
    elif parts:
        only_text = all(part["type"] == "text" for part in parts)
        content = "".join(part["text"] for part in parts) if only_text else parts
        out.append({"role": "user", "content": content})
    return out


def _result_text(block: ToolResultBlock, text: str) -> str:
    return f"Error: {text}" if block.is_error else text


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``messages.0.content.1.source`` from a pydantic location, without its union-tag steps."""
    parts: list[str] = []
    for index, step in enumerate(loc):
        previous = loc[index - 1] if index else None
        if step in _UNION_TAGS and (isinstance(previous, int) or previous in _TAGGED_FIELDS):
            continue
        parts.append(str(step))
    return ".".join(parts)


def parse_messages_request(raw: bytes, *, counting: bool = False) -> MessagesRequest:
    """A checked request; ``MessagesError`` (400) naming the field otherwise.

    ``counting``: a ``count_tokens`` body, which has no ``max_tokens`` and is never streamed.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MessagesError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise MessagesError(400, "The request body must be a JSON object.")
    if counting:
        for name in ("max_tokens", "stream"):
            if name in data:
                raise MessagesError(400, f"{name}: Extra inputs are not permitted")
        data = {**data, "max_tokens": 1}
    try:
        return MessagesRequest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        path = _field_path(tuple(error["loc"])) or "body"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise MessagesError(400, f"{path}: {message}") from None


# --- the answer ---------------------------------------------------------------------------------


def message_id(canonical_id: object) -> str:
    text = str(canonical_id or "")
    return text if text.startswith("msg_") else f"msg_{text}"


def tool_input(arguments: object) -> dict[str, Any]:
    """A tool call's JSON-string arguments as the object Anthropic's ``input`` must be."""
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str | bytes) and arguments else {}
    except orjson.JSONDecodeError:
        value = None
    # Arguments that are not a JSON object are passed on as they came, not dropped.
    return value if isinstance(value, dict) else {"arguments": arguments}


def to_messages_response(canonical_body: bytes, model: str) -> bytes:
    """A canonical ``chat.completion`` body as an Anthropic ``message`` body."""
    completion = orjson.loads(canonical_body)
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        name = function.get("name")
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": name,
                "input": tool_input(function.get("arguments")),
            }
        )
    usage = completion.get("usage") or {}
    return orjson.dumps(
        {
            "id": message_id(completion.get("id")),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": STOP_REASONS.get(choice.get("finish_reason"), "end_turn"),
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.get("prompt_tokens") or 0,
                "output_tokens": usage.get("completion_tokens") or 0,
            },
        }
    )


__all__ = [
    "MessagesError",
    "MessagesRequest",
    "anthropic_error",
    "anthropic_error_body",
    "parse_messages_request",
    "to_messages_response",
]
