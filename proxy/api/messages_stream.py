"""Canonical ``chat.completion.chunk`` events -> Anthropic Messages stream events.

The answer to a streamed ``POST /v1/messages``: ``message_start``, then per content
block ``content_block_start`` / ``content_block_delta``* / ``content_block_stop``, then
``message_delta`` (stop reason and usage) and ``message_stop``. Every event carries its
``event:`` line, which the ``anthropic`` SDK needs to dispatch it.

Canonical text deltas become one text block; each tool call becomes a ``tool_use``
block whose ``arguments`` fragments are ``input_json_delta``s. The token counts come
from the canonical usage chunk (ask the provider for it: the canonical request from
``MessagesRequest.to_canonical`` does), so ``message_start`` reports zero tokens and
``message_delta`` the real counts, which the SDK takes as the final ones. A canonical
error event becomes an Anthropic ``error`` event, which the SDK raises.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.adapters.failures import error_type
from proxy.api.chunk_stream import ChunkTranslator, first_choices, usage_tokens
from proxy.api.messages_translate import ERROR_TYPES, STOP_REASONS, message_id


def event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class MessagesStream(ChunkTranslator):
    """Feed canonical SSE bytes, get Anthropic SSE bytes; ``flush()`` at the end of the stream."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self._model = model
        self._started = False
        self._blocks = 0  # content blocks opened so far
        self._open: int | None = None  # the open block's index
        self._open_text = False
        self._tool_blocks: dict[int, int] = {}  # canonical tool call index -> block index
        self._stop_reason = "end_turn"
        self.input_tokens = 0
        self.output_tokens = 0

    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        if isinstance(chunk.get("error"), dict):
            return self._error(chunk["error"])
        out = b"" if self._started else self._start(chunk)
        tokens = usage_tokens(chunk)
        if tokens is not None:
            self.input_tokens, self.output_tokens = tokens
        for choice in first_choices(chunk):
            out += self._choice(choice)
        return out

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return event("message_start", {"type": "message_start", "message": message})

    def _choice(self, choice: dict[str, Any]) -> bytes:
        delta = choice.get("delta") or {}
        out = b""
        text = delta.get("content")
        if isinstance(text, str) and text:
            out += self._text(text)
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                out += self._tool_call(call)
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self._stop_reason = STOP_REASONS.get(reason, "end_turn")
            out += self._close()
        return out

    def _text(self, text: str) -> bytes:
        out = b""
        if not self._open_text:
            out += self._close() + self._open_block({"type": "text", "text": ""})
            self._open_text = True
        delta = {"type": "text_delta", "text": text}
        return out + event(
            "content_block_delta", {"type": "content_block_delta", "index": self._open, "delta": delta}
        )

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        index = call.get("index", 0)
        function = call.get("function") or {}
        out = b""
        if index not in self._tool_blocks:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{index}",
                "name": function.get("name"),
                "input": {},
            }
            out += self._close() + self._open_block(block)
            self._tool_blocks[index] = self._blocks - 1
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            payload = {"type": "content_block_delta", "index": self._tool_blocks[index], "delta": delta}
            out += event("content_block_delta", payload)
        return out

    def _open_block(self, block: dict[str, Any]) -> bytes:
        self._open, self._blocks = self._blocks, self._blocks + 1
        return event(
            "content_block_start",
            {"type": "content_block_start", "index": self._open, "content_block": block},
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_text = self._open, None, False
        return event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _end(self) -> bytes:
        self._done = True
        out = (b"" if self._started else self._start({})) + self._close()
        delta = {"stop_reason": self._stop_reason, "stop_sequence": None}
        usage = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        out += event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        return out + event("message_stop", {"type": "message_stop"})

    def _error(self, error: dict[str, Any]) -> bytes:
        self._done = True
        code = error.get("code")
        # A provider's own Anthropic error type (e.g. overloaded_error) is kept; else one by status.
        kind = (
            code
            if code in ERROR_TYPES.values()
            else error_type(code if isinstance(code, int) else 500, ERROR_TYPES)
        )
        message = str(error.get("message") or "stream error")
        return event("error", {"type": "error", "error": {"type": kind, "message": message}})
