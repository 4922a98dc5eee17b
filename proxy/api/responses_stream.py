"""Canonical ``chat.completion.chunk`` events -> OpenAI Responses stream events.

The answer to a streamed ``POST /v1/responses``: ``response.created`` and
``response.in_progress``; per output item ``response.output_item.added``, then for a
message ``response.content_part.added``, ``response.output_text.delta``*,
``response.output_text.done``, ``response.content_part.done``, and for a tool call
``response.function_call_arguments.delta``*, ``response.function_call_arguments.done``;
then ``response.output_item.done``; last ``response.completed`` (``response.incomplete``
after a ``length`` finish) carrying the whole response with its usage. Every event has its
``event:`` line and a ``sequence_number``, as OpenAI's do. A canonical error event becomes
``response.failed`` with the error.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.api.chunk_stream import ChunkTranslator, first_choices, usage_tokens, whole_number
from proxy.api.responses_translate import call_item, message_item, response_id, response_object, usage_of


class ResponsesStream(ChunkTranslator):
    """Feed canonical SSE bytes, get Responses SSE bytes; ``flush()`` at the end of the stream."""

    def __init__(self, model: str, echoed: dict[str, Any]) -> None:
        super().__init__()
        self._model = model
        self._echoed = echoed
        self._sequence = 0
        self._id = ""
        self._created_at = 0
        self._output: list[dict[str, Any]] = []  # finished items
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._calls: dict[int, int] = {}  # canonical tool call index -> output index
        self._finish: str | None = None
        self._usage = usage_of(0, 0)

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        body = {"type": kind, "sequence_number": self._sequence, **payload}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"

    def _response(self, status: str, finish: str | None = None) -> dict[str, Any]:
        return response_object(
            self._id,
            self._created_at,
            self._model,
            self._echoed,
            status=status,
            output=list(self._output),
            usage=self._usage if status != "in_progress" else None,
            finish_reason=finish,
        )

    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self._id else self._start(chunk)
        if isinstance(chunk.get("error"), dict):
            return out + self._failed(chunk["error"])
        tokens = usage_tokens(chunk)
        if tokens is not None:
            self._usage = usage_of(*tokens)
        for choice in first_choices(chunk):
            out += self._choice(choice)
        return out

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self._id = response_id(chunk.get("id") or "stream")
        self._created_at = whole_number(chunk.get("created"))
        created = self._response("in_progress")
        return self._event("response.created", {"response": created}) + self._event(
            "response.in_progress", {"response": created}
        )

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
            self._finish = reason
        return out

    def _text(self, text: str) -> bytes:
        out = b""
        if self._open is None or self._open["type"] != "message":
            out += self._close()
            item = message_item(
                f"msg_{self._id.removeprefix('resp_')}_{len(self._output)}", "", "in_progress"
            )
            out += self._add(item)
            part = item["content"][0]
            out += self._event(
                "response.content_part.added",
                {"item_id": item["id"], "output_index": len(self._output), "content_index": 0, "part": part},
            )
        assert self._open is not None
        self._open["content"][0]["text"] += text
        return out + self._event(
            "response.output_text.delta",
            {
                "item_id": self._open["id"],
                "output_index": len(self._output),
                "content_index": 0,
                "delta": text,
                "logprobs": [],
            },
        )

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        index = whole_number(call.get("index"))
        function = call.get("function") or {}
        out = b""
        if index not in self._calls:
            out += self._close()
            call_id = str(call.get("id") or f"call_{index}")
            out += self._add(call_item(call_id, str(function.get("name") or ""), "", "in_progress"))
            self._calls[index] = len(self._output)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments and self._open is not None:
            self._open["arguments"] += arguments
            out += self._event(
                "response.function_call_arguments.delta",
                {"item_id": self._open["id"], "output_index": len(self._output), "delta": arguments},
            )
        return out

    def _add(self, item: dict[str, Any]) -> bytes:
        """Open ``item`` (a message is announced without its part, which comes next)."""
        self._open = item
        announced = {**item, "content": []} if item["type"] == "message" else dict(item)
        return self._event(
            "response.output_item.added", {"output_index": len(self._output), "item": announced}
        )

    def _close(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        index = len(self._output)
        item["status"] = "completed"
        out = b""
        if item["type"] == "message":
            part = item["content"][0]
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out += self._event("response.output_text.done", {**where, "text": part["text"], "logprobs": []})
            out += self._event("response.content_part.done", {**where, "part": part})
        else:
            out += self._event(
                "response.function_call_arguments.done",
                {"item_id": item["id"], "output_index": index, "arguments": item["arguments"]},
            )
        self._output.append(item)
        return out + self._event("response.output_item.done", {"output_index": index, "item": item})

    def _end(self) -> bytes:
        self._done = True
        out = (b"" if self._id else self._start({})) + self._close()
        final = self._response("completed", self._finish)
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, {"response": final})

    def _failed(self, error: dict[str, Any]) -> bytes:
        self._done = True
        failed = self._response("failed")
        code = error.get("code")
        failed["error"] = {
            "code": code if isinstance(code, str) else "server_error",
            "message": str(error.get("message") or "the provider's stream failed"),
        }
        return self._event("response.failed", {"response": failed})
