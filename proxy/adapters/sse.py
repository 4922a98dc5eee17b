"""Server-sent events: reading any provider's stream and writing OpenAI chunk events.

``SseParser`` turns bytes, split anywhere, into whole events. It accepts ``\\n``,
``\\r\\n`` and ``\\r`` line ends, comments (``: ping``) and multi-line ``data``, as
the SSE specification says a client must. ``ChunkWriter`` renders the canonical
``chat.completion.chunk`` events that the Anthropic and Gemini translators emit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from symphony.clock import wall_ms

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # "message" when the stream names none
    data: bytes


class SseParser:
    def __init__(self) -> None:
        self._line = b""  # the current, unfinished line
        self._held_cr = False  # a chunk ended in "\r": the next may start with its "\n"
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, data: bytes) -> list[SseEvent]:
        """The events completed by ``data``."""
        if self._held_cr:
            self._held_cr = False
            data = data[1:] if data.startswith(b"\n") else data
        if data.endswith(b"\r"):
            self._held_cr = True
        text = self._line + data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self._line = text.split(b"\n")
        events: list[SseEvent] = []
        for line in lines:
            event = self._line_done(line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SseEvent]:
        """The last event when the stream ended without its blank line."""
        events = self.feed(b"\n\n") if self._line or self._data else []
        self._held_cr = False
        return events

    def _line_done(self, line: bytes) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        return None

    def _dispatch(self) -> SseEvent | None:
        event, self._event = self._event or "message", ""
        if not self._data:
            return None
        data, self._data = b"\n".join(self._data), []
        return SseEvent(event, data)


def sse_data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def usage_object(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


class ChunkWriter:
    """The canonical chunk events of one streamed answer (one choice, index 0)."""

    def __init__(self, completion_id: str, model: str) -> None:
        self.id = completion_id
        self.model = model
        self.created = wall_ms() // 1000

    def _head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse_data({**self._head(), "choices": [choice]})

    def role(self) -> bytes:
        return self.delta({"role": "assistant", "content": ""})

    def text(self, text: str) -> bytes:
        return self.delta({"content": text})

    def tool_call(
        self, index: int, arguments: str, *, call_id: str | None = None, name: str | None = None
    ) -> bytes:
        """A tool call delta: the first one of a call carries its id, type and name."""
        call: dict[str, Any] = {"index": index}
        if call_id is not None:
            call.update(id=call_id, type="function", function={"name": name, "arguments": arguments})
        else:
            call["function"] = {"arguments": arguments}
        return self.delta({"tool_calls": [call]})

    def finish(self, finish_reason: str) -> bytes:
        return self.delta({}, finish_reason)

    def usage(self, input_tokens: int, output_tokens: int) -> bytes:
        return sse_data({**self._head(), "choices": [], "usage": usage_object(input_tokens, output_tokens)})
