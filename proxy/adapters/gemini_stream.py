"""Gemini ``streamGenerateContent?alt=sse`` chunks -> canonical ``chat.completion.chunk`` events.

Each Gemini event is a whole ``GenerateContentResponse`` holding the next parts of
its one candidate: text parts become content deltas, a ``functionCall`` part (always
whole) becomes one tool call delta with its arguments, and the ``finishReason`` of the
last chunk becomes the finish chunk. Gemini ends a stream by closing it, so the usage
chunk (when asked for) and ``[DONE]`` come from ``flush()``. ``usageMetadata`` is
cumulative: the last one seen counts.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import orjson

from proxy.adapters.base import StreamTranslator
from proxy.adapters.failures import error_body
from proxy.adapters.sse import DONE, ChunkWriter, SseParser

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


def finish_reason(reason: object, *, tools_called: bool) -> str:
    """OpenAI's finish reason for Gemini's; a finished turn that called functions is ``tool_calls``."""
    mapped = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if mapped == "stop" and tools_called else mapped


def usage_tokens(usage: object) -> tuple[int, int]:
    """(input, output) tokens from ``usageMetadata``; thinking tokens are output, as Google bills them."""
    if not isinstance(usage, dict):
        return 0, 0

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) else 0

    return count("promptTokenCount"), count("candidatesTokenCount") + count("thoughtsTokenCount")


def call_id(call: Mapping[str, Any]) -> str:
    """Gemini's own call id when it sends one, else a fresh one: OpenAI clients need ids."""
    given = call.get("id")
    return given if isinstance(given, str) and given else f"call_{secrets.token_hex(12)}"


def answer_parts(response: Mapping[str, Any]) -> tuple[list[dict[str, Any]], object]:
    """The first candidate's parts (thought summaries left out) and its finish reason."""
    candidates = response.get("candidates")
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        blocked = isinstance(response.get("promptFeedback"), dict) and response["promptFeedback"].get(
            "blockReason"
        )
        return [], "SAFETY" if blocked else None
    candidate = candidates[0]
    content = candidate["content"] if isinstance(candidate.get("content"), dict) else {}
    parts = content["parts"] if isinstance(content.get("parts"), list) else []
    kept = [part for part in parts if isinstance(part, dict) and not part.get("thought")]
    return kept, candidate.get("finishReason")


class GeminiStream(StreamTranslator):
    def __init__(self, model: str, *, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._parser = SseParser()
        self._writer = ChunkWriter(f"chatcmpl-{secrets.token_hex(12)}", model)
        self._started = False
        self._tool_calls = 0
        self._done = False
        self.error: dict[str, Any] | None = None  # set when the stream carried an error

    def feed(self, data: bytes) -> bytes:
        return b"".join(self._on(event.data) for event in self._parser.feed(data))

    def flush(self) -> bytes:
        rest = b"".join(self._on(event.data) for event in self._parser.flush())
        if self._done:
            return rest
        self._done = True
        usage = self._writer.usage(self.input_tokens, self.output_tokens) if self._include_usage else b""
        return rest + usage + DONE

    def _on(self, data: bytes) -> bytes:
        if self._done:
            return b""
        try:
            response = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(response, dict):
            return b""
        if isinstance(response.get("error"), dict):
            return self._error(response["error"])
        out = b"" if self._started else self._start(response)
        if "usageMetadata" in response:
            self.input_tokens, self.output_tokens = usage_tokens(response["usageMetadata"])
        parts, reason = answer_parts(response)
        for part in parts:
            out += self._part(part)
        if reason is not None:
            out += self._writer.finish(finish_reason(reason, tools_called=self._tool_calls > 0))
        return out

    def _start(self, response: Mapping[str, Any]) -> bytes:
        self._started = True
        if isinstance(response.get("responseId"), str):
            self._writer.id = response["responseId"]
        if isinstance(response.get("modelVersion"), str):
            self._writer.model = response["modelVersion"]
        return self._writer.role()

    def _part(self, part: Mapping[str, Any]) -> bytes:
        if isinstance(part.get("text"), str) and part["text"]:
            return self._writer.text(part["text"])
        call = part.get("functionCall")
        if not isinstance(call, dict):
            return b""
        index, self._tool_calls = self._tool_calls, self._tool_calls + 1
        arguments = orjson.dumps(call.get("args") or {}).decode()
        return self._writer.tool_call(index, arguments, call_id=call_id(call), name=str(call.get("name")))

    def _error(self, error: dict[str, Any]) -> bytes:
        self.error = error
        self._done = True
        status = error.get("status")
        body = error_body(
            str(error.get("message", "stream error")), "api_error", code=str(status) if status else None
        )
        return b"data: " + body + b"\n\n"
