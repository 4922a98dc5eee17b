"""Relaying an upstream server-sent-event stream to the client without buffering.

Bytes are forwarded as soon as they complete an event (events end with a blank
line, ``\\n\\n``; OpenAI-format upstreams use no ``\\r``). The relay reads the
token counts from the usage chunk, which the proxy always asks upstream for, and
drops that chunk (empty ``choices``) when the client did not ask for it. Only an
event that holds a usage *object* is parsed; every other byte passes untouched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy.attempt import Attempt
from proxy.upstream import is_timeout
from symphony.events import AttemptStatus

log = logging.getLogger(__name__)

_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_EVENT_END = b"\n\n"


def usage_tokens(usage: object) -> tuple[int, int]:
    """(input, output) tokens from an OpenAI ``usage`` object; zeros when absent."""
    if not isinstance(usage, dict):
        return 0, 0
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else 0), (completion if isinstance(completion, int) else 0)


class SseRelay:
    """Splits a byte stream into whole SSE events, noting the usage chunk as it passes."""

    def __init__(self, *, forward_usage: bool) -> None:
        self._forward_usage = forward_usage
        self._buffer = b""
        self.usage: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        """The bytes to send on now: every event completed by ``data``."""
        buffer = self._buffer + data if self._buffer else data
        end = buffer.rfind(_EVENT_END)
        if end < 0:
            self._buffer = buffer
            return b""
        complete, self._buffer = buffer[: end + 2], buffer[end + 2 :]
        if _USAGE_OBJECT.search(complete) is None:
            return complete
        kept = [event + _EVENT_END for event in complete.split(_EVENT_END) if event and self._keep(event)]
        return b"".join(kept)

    def flush(self) -> bytes:
        """What is left at the end of the stream (an unterminated last event)."""
        rest, self._buffer = self._buffer, b""
        return rest

    def _keep(self, event: bytes) -> bool:
        if _USAGE_OBJECT.search(event) is None:
            return True
        payload = b"".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(chunk, dict) or not isinstance(chunk.get("usage"), dict):
            return True
        self.usage = chunk["usage"]
        return self._forward_usage or chunk.get("choices") != []


class RelayResponse(StreamingResponse):
    """Streams an upstream response to the client and always finishes its ``Attempt``.

    The usage event is emitted and the upstream connection released whatever ends
    the stream: its natural end, an upstream read error, or the client going away.
    """

    def __init__(
        self, upstream: httpx.Response, attempt: Attempt, *, forward_usage: bool, headers: Mapping[str, str]
    ) -> None:
        self._upstream = upstream
        self._attempt = attempt
        self._sse = SseRelay(forward_usage=forward_usage)
        # Stays "cancelled" only when the client goes away before the stream ends.
        self._status: AttemptStatus = "cancelled"
        super().__init__(self._relay(), media_type="text/event-stream", headers=headers)

    async def _relay(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._upstream.aiter_raw():
                self._attempt.first_byte()
                out = self._sse.feed(data)
                if out:
                    yield out
        except httpx.HTTPError as exc:
            self._status = "timeout" if is_timeout(exc) else "error"
            log.warning("stream from %s/%s broke: %r", self._attempt.provider, self._attempt.model, exc)
            return
        rest = self._sse.flush()
        if rest:
            yield rest
        self._status = "ok"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._attempt.finish(self._status, *usage_tokens(self._sse.usage))
            with anyio.CancelScope(shield=True):
                await self._upstream.aclose()
