"""Anthropic Messages stream events -> canonical ``chat.completion.chunk`` events.

Anthropic streams ``message_start`` (id, model, input tokens), then per content block
``content_block_start`` / ``content_block_delta``* / ``content_block_stop``, then
``message_delta`` (stop reason, output tokens) and ``message_stop``; ``ping`` may come
anywhere and ``error`` may end the stream. The translator answers with OpenAI's
order: the role chunk, content and tool-call deltas, the finish chunk, the usage
chunk (when the client asked for it) and ``[DONE]``.

Each ``tool_use`` block becomes one OpenAI tool call (``index`` counts tool calls,
not blocks); its ``input_json_delta`` fragments become ``arguments`` fragments. The
emulated JSON mode's tool (``JSON_TOOL``) streams as plain content instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from proxy.adapters.base import StreamTranslator
from proxy.adapters.failures import error_body
from proxy.adapters.sse import DONE, ChunkWriter, SseEvent, SseParser

JSON_TOOL = "symphony_json_answer"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: object, *, tools_called: bool) -> str:
    """OpenAI's finish reason for Anthropic's ``stop_reason``.

    ``tool_use`` without a real tool call is the emulated JSON mode's answer: ``stop``.
    """
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    return "stop" if reason == "tool_calls" and not tools_called else reason


def input_tokens(usage: Mapping[str, Any]) -> int:
    """Prompt tokens as OpenAI counts them: cache writes and reads included."""
    fields = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return sum(value for name in fields if isinstance(value := usage.get(name), int))


class AnthropicStream(StreamTranslator):
    def __init__(self, model: str, *, include_usage: bool) -> None:
        self._model = model
        self._include_usage = include_usage
        self._parser = SseParser()
        self._writer = ChunkWriter("msg", model)
        self._blocks: dict[int, int | None] = {}  # block index -> tool call index (None: text)
        self._tool_calls = 0
        self._done = False
        self.error: dict[str, Any] | None = None  # set when the stream ended with an error event
        self._handlers: dict[str, Callable[[dict[str, Any]], bytes]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._on(event) for event in self._parser.feed(data))

    def flush(self) -> bytes:
        rest = b"".join(self._on(event) for event in self._parser.flush())
        return rest if self._done else rest + self._end()

    def _on(self, event: SseEvent) -> bytes:
        if self._done:
            return b""
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(payload, dict):
            return b""
        handler = self._handlers.get(str(payload.get("type")))
        return handler(payload) if handler is not None else b""  # ping, content_block_stop, new types

    def _message_start(self, payload: dict[str, Any]) -> bytes:
        message = payload.get("message") or {}
        self._writer = ChunkWriter(str(message.get("id") or "msg"), str(message.get("model") or self._model))
        self.input_tokens = input_tokens(message.get("usage") or {})
        return self._writer.role()

    def _block_start(self, payload: dict[str, Any]) -> bytes:
        block = payload.get("content_block") or {}
        index = payload.get("index")
        if not isinstance(index, int):
            return b""
        if block.get("type") == "text":
            self._blocks[index] = None
            return self._writer.text(block["text"]) if block.get("text") else b""
        if block.get("type") == "tool_use" and block.get("name") == JSON_TOOL:
            self._blocks[index] = None
            return b""
        if block.get("type") == "tool_use":
            self._blocks[index] = call = self._tool_calls
            self._tool_calls += 1
            return self._writer.tool_call(call, "", call_id=str(block.get("id")), name=str(block.get("name")))
        return b""  # thinking and other blocks carry nothing for the canonical answer

    def _block_delta(self, payload: dict[str, Any]) -> bytes:
        delta = payload.get("delta") or {}
        index = payload.get("index")
        if not isinstance(index, int) or index not in self._blocks:
            return b""
        call = self._blocks[index]
        kind = delta.get("type")
        text = delta.get("text") if kind == "text_delta" else delta.get("partial_json")
        if kind not in ("text_delta", "input_json_delta") or not isinstance(text, str) or not text:
            return b""
        return self._writer.text(text) if call is None else self._writer.tool_call(call, text)

    def _message_delta(self, payload: dict[str, Any]) -> bytes:
        usage = payload.get("usage") or {}
        if isinstance(usage.get("output_tokens"), int):
            self.output_tokens = usage["output_tokens"]
        if isinstance(usage.get("input_tokens"), int):
            self.input_tokens = input_tokens(usage)
        stop_reason = (payload.get("delta") or {}).get("stop_reason")
        return self._writer.finish(finish_reason(stop_reason, tools_called=self._tool_calls > 0))

    def _message_stop(self, payload: dict[str, Any]) -> bytes:
        return self._end()

    def _error(self, payload: dict[str, Any]) -> bytes:
        """An error mid-stream: sent on as an OpenAI error event, which the openai SDK raises."""
        error = payload.get("error") or {}
        self.error = error
        self._done = True
        message, code = str(error.get("message", "stream error")), error.get("type")
        body = error_body(message, "api_error", code=code if isinstance(code, str) else None)
        return b"data: " + body + b"\n\n"

    def _end(self) -> bytes:
        self._done = True
        usage = self._writer.usage(self.input_tokens, self.output_tokens) if self._include_usage else b""
        return usage + DONE
