"""The request body of ``POST /v1/chat/completions``, as the proxy checks it.

Types are strict (``"true"`` is not a boolean, ``1.0`` is not an integer), so a bad
field is reported by name instead of being guessed at. The fields every adapter
reads (messages, tools, tool calls, ``response_format``…) are checked in depth, so
a malformed one is a 400 here rather than a surprise in a translation. Fields the
proxy does not know are kept and forwarded untouched (``extra="allow"``): the
provider is the judge of its own extensions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]

# What each known content part type must carry, as (field, type of that field).
_PART_FIELDS: dict[str, tuple[str, type]] = {
    "text": ("text", str),
    "image_url": ("image_url", dict),
    "input_audio": ("input_audio", dict),
    "file": ("file", dict),
}


def _part(part: object) -> dict[str, Any]:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise ValueError("expected content parts: objects with a string 'type'")
    required = _PART_FIELDS.get(part["type"])
    if required is not None and not isinstance(part.get(required[0]), required[1]):
        kind = "a string" if required[1] is str else "an object"
        raise ValueError(f"a '{part['type']}' part needs '{required[0]}' as {kind}")
    if part["type"] == "image_url" and not isinstance(part["image_url"].get("url"), str):
        raise ValueError("an 'image_url' part needs 'image_url.url' as a string")
    return part


def _content(value: object) -> str | list[dict[str, Any]] | None:
    """A message's content: text, an array of typed parts, or null (assistant tool calls)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return [_part(part) for part in value]
    raise ValueError("expected a string or an array of content parts (objects with a string 'type')")


def _stop(value: object) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError("expected a string or an array of strings")


def _tool_choice(value: object) -> str | dict[str, Any] | None:
    if value is None or (isinstance(value, str) and value in ("none", "auto", "required")):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return value
    raise ValueError("expected 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}")


Content = Annotated[str | list[dict[str, Any]] | None, PlainValidator(_content)]
Stop = Annotated[str | list[str] | None, PlainValidator(_stop)]
ToolChoice = Annotated[str | dict[str, Any] | None, PlainValidator(_tool_choice)]


class StrictModel(BaseModel):
    """Strict types; unknown fields kept (and forwarded)."""

    model_config = ConfigDict(strict=True, extra="allow")


class ClosedModel(BaseModel):
    """Strict types; unknown fields refused (a typo is named, not ignored)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class FunctionCall(StrictModel):
    name: str
    arguments: str


class ToolCall(StrictModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(StrictModel):
    role: Role
    tool_calls: list[ToolCall] | None = None  # before content: its check reads these two
    content: Content = Field(default=None, validate_default=True)
    name: str | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="after")
    @classmethod
    def _content_unless_tool_calls(cls, value: object, info: ValidationInfo) -> object:
        # OpenAI lets an assistant turn that calls tools leave content out; every other turn needs it.
        if value is None and not (info.data.get("role") == "assistant" and info.data.get("tool_calls")):
            raise PydanticCustomError("missing", "Field required")
        return value


class FunctionDefinition(StrictModel):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(StrictModel):
    type: Literal["function"]
    function: FunctionDefinition


class ResponseFormat(StrictModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class StreamOptions(StrictModel):
    include_usage: bool = False


class ChatCompletionRequest(StrictModel):
    """``model`` defaults to ``auto``: Symphony picks the arm."""

    messages: list[Message] = Field(min_length=1)
    model: str = Field(default="auto", min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=128)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    stop: Stop = None
    seed: int | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        # Each answer is routed, priced, limited and learned from on its own: one choice a request.
        if value is not None and value > 1:
            raise PydanticCustomError(
                "one_choice",
                "Symphony serves one choice per request (n={n}); send {n} requests, each routed on its own",
                {"n": value},
            )
        return value

    @property
    def include_usage(self) -> bool:
        """Whether the client asked for the usage chunk at the end of a stream."""
        return self.stream_options is not None and self.stream_options.include_usage
