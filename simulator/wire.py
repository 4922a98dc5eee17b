"""What every wire format module provides, and the types they share.

A wire module (``openai_wire``, ``anthropic_wire``, ``gemini_wire``) is pure: it
checks auth headers, parses a request into a ``Prompt``, renders a ``Reply`` as a
body or as stream frames, renders errors and rate-limit headers. It does no I/O and
never waits: the serving loop (``serving``) decides *when* each frame is sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ValidationError

from simulator.generation import Completion, Prompt

# A frame of a streamed answer and how many new tokens it carries (for pacing).
Frame = tuple[bytes, int]


class SimError(Exception):
    """A request the simulator refuses; each wire renders it in its provider's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: int | None = None,
        quota: Quota | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s
        self.quota = quota


@dataclass(frozen=True)
class Quota:
    """The limit a 429 is about: a model's requests or tokens per minute (Gemini names it)."""

    model: str
    metric: str  # "requests" or "tokens"


@dataclass(frozen=True)
class Reply:
    """A planned answer with what identifies it on the wire."""

    id: str  # a ULID; each wire adds its own prefix (chatcmpl-, msg_, ...)
    created_ms: int  # event time
    model: str
    completion: Completion
    include_usage: bool = True  # whether a stream reports usage (OpenAI's stream_options)


@dataclass(frozen=True)
class LimitSnapshot:
    """A provider's rate-limit window as its headers report it, after this request."""

    requests_limit: int
    requests_remaining: int
    tokens_limit: int
    tokens_remaining: int
    input_tokens_remaining: int
    output_tokens_remaining: int
    reset_at_ms: int  # event time at which the window starts afresh
    now_ms: int

    @property
    def reset_in_ms(self) -> int:
        return max(0, self.reset_at_ms - self.now_ms)


class Wire(Protocol):
    """One provider API's wire format."""

    stream_media_type: str
    # The statuses a provider answers with when it fails (drawn for injected 5xx faults).
    server_error_statuses: tuple[int, ...]

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str:
        """The key the provider's auth header carries; a 401 ``SimError`` when there is none."""

    def parse(self, raw: bytes, path_params: Mapping[str, str], query: Mapping[str, str]) -> Prompt:
        """The request as a ``Prompt``; raise a 400 ``SimError`` naming the bad field."""

    def body(self, reply: Reply) -> bytes:
        """A whole (non-streamed) answer."""

    def frames(self, reply: Reply) -> Iterator[Frame]:
        """The server-sent events of a streamed answer."""

    def error(self, error: SimError) -> bytes:
        """The error body the provider's SDK expects for ``error.status``."""

    def limit_headers(self, snapshot: LimitSnapshot) -> dict[str, str]:
        """The rate-limit headers the provider sends on every answer (maybe none)."""

    def models_body(self, models: list[str], created_ms: int) -> bytes:
        """The provider's model list."""


def masked(key: str) -> str:
    """A key as OpenAI echoes a wrong one: its first 8 and last 4 characters, stars between."""
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def decode_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SimError(400, "We could not parse the JSON body of your request.") from None


def validate(model: type[BaseModel], data: Any, *, prefix: str = "") -> Any:
    """``model.model_validate(data)``, with a validation failure as a 400 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = prefix + ".".join(str(part) for part in error["loc"])
        raise SimError(400, f"{param or 'body'}: {error['msg']}", param=param or None) from None


def sse(data: Mapping[str, Any], event: str | None = None) -> bytes:
    """One server-sent event (with an ``event:`` line when ``event`` is given)."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def stream_word(index: int, word: str) -> str:
    """A word as streamed: a leading space on every word after the first."""
    return word if index == 0 else " " + word


def go_duration(ms: int) -> str:
    """A span as Go prints it, the way OpenAI's reset headers do: ``17ms``, ``1s``, ``6m0s``, ``1.5s``."""
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest_ms = divmod(ms, 60_000)
    seconds = f"{rest_ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"
