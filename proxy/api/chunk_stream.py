"""The canonical stream (OpenAI chat-completion chunks over SSE) read for the APIs that answer in a
stream shape of their own: Anthropic's Messages and OpenAI's Responses.

A ``ChunkTranslator`` is fed the canonical bytes as they come and returns what its API's client
gets: each complete JSON chunk goes to its ``_chunk``, ``[DONE]`` (or the stream's end without
one) to its ``_end``, once; anything else on the stream (a comment, a keep-alive, a line that is
no JSON object) is passed over. ``translated`` makes a translator into the attempt loop's stream
renderer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson

from proxy.adapters.sse import SseParser
from proxy.attempts.stream_relay import Render

DONE = b"[DONE]"


class ChunkTranslator(ABC):
    def __init__(self) -> None:
        self._parser = SseParser()
        self._done = False  # set by ``_end``

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._on(item.data) for item in self._parser.feed(data))

    def flush(self) -> bytes:
        """The end of the stream: what is left, and the end if ``[DONE]`` never came."""
        rest = b"".join(self._on(item.data) for item in self._parser.flush())
        return rest if self._done else rest + self._end()

    def _on(self, data: bytes) -> bytes:
        if self._done:
            return b""
        if data == DONE:
            return self._end()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        return self._chunk(chunk) if isinstance(chunk, dict) else b""

    @abstractmethod
    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        """What one canonical chunk becomes."""

    @abstractmethod
    def _end(self) -> bytes:
        """The stream's closing events; must set ``_done``."""


def translated(make: Callable[[], ChunkTranslator]) -> Render:
    """A stream renderer passing each event through a fresh translator from ``make``."""

    async def render(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        translator = make()
        async for event in events:
            out = translator.feed(event)
            if out:
                yield out
        rest = translator.flush()
        if rest:
            yield rest

    return render


def usage_tokens(chunk: dict[str, Any]) -> tuple[int, int] | None:
    """A chunk's (prompt, completion) tokens, when it carries usage."""
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        return None
    return whole_number(usage.get("prompt_tokens")), whole_number(usage.get("completion_tokens"))


def first_choices(chunk: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The chunk's deltas for the first choice (``n`` > 1 is refused at the door)."""
    for choice in chunk.get("choices") or []:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            yield choice


def whole_number(value: object) -> int:
    """``value`` if it is an int (a bool is not), else 0: a provider's field read defensively."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
