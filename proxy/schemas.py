"""The request body of ``POST /v1/chat/completions``, as the proxy checks it.

Types are strict (``"true"`` is not a boolean, ``1.0`` is not an integer), so a bad
field is reported by name instead of being guessed at. Fields the proxy does not
know are kept and forwarded untouched (``extra="allow"``): the provider is the
judge of its own extensions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


def _content(value: object) -> str | list[dict[str, Any]] | None:
    """A message's content: text, an array of typed parts, or null (assistant tool calls)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(part, dict) and isinstance(part.get("type"), str) for part in value
    ):
        return value
    raise ValueError("expected a string or an array of content parts (objects with a string 'type')")


def _stop(value: object) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError("expected a string or an array of strings")


Content = Annotated[str | list[dict[str, Any]] | None, PlainValidator(_content)]
Stop = Annotated[str | list[str] | None, PlainValidator(_stop)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Message(_Strict):
    role: Role
    content: Content


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
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

    @property
    def include_usage(self) -> bool:
        """Whether the client asked for the usage chunk at the end of a stream."""
        return self.stream_options is not None and self.stream_options.include_usage
