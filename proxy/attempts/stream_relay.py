"""Relaying a served upstream stream to the client without buffering.

The attempt loop hands over an ``UpstreamStream`` whose first chunk has arrived.
``canonical_events`` turns it into OpenAI chunk events through the adapter's
translator (byte pass-through for OpenAI-format providers); the inbound API may
re-render those (Anthropic's events, the native API's leading decision event).
``RelayResponse`` sends the result and ends the attempt through the stream's own
``finish``, whatever ends the stream: its natural end, an upstream read error (the
client then gets an error event, as OpenAI sends one), or the client going away
(``cancelled``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from proxy import errors
from proxy.attempts.attempt_loop import UpstreamStream
from proxy.attempts.upstream import TRANSPORT_ERRORS, is_timeout
from symphony.events import AttemptStatus

log = logging.getLogger(__name__)

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
DONE = b"data: [DONE]"

# Re-renders the canonical event stream for the inbound API (identity for OpenAI's).
Render = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


def sse_error(message: str, code: str) -> bytes:
    """The event an OpenAI-format stream ends with when it breaks (the ``openai`` SDK raises on it)."""
    return b"data: " + errors.error_body(message, "api_error", None, code) + b"\n\n"


class StreamState:
    """How the stream ended; stays ``cancelled`` only when the client went away first."""

    def __init__(self) -> None:
        self.status: AttemptStatus = "cancelled"


async def canonical_events(stream: UpstreamStream, state: StreamState) -> AsyncIterator[bytes]:
    translator = stream.translator
    try:
        out = translator.feed(stream.first)
        if out:
            _mark_done(out, state)
            yield out
        async for data in stream.chunks:
            out = translator.feed(data)
            if out:
                _mark_done(out, state)
                yield out
        rest = translator.flush()
    except TRANSPORT_ERRORS as exc:
        state.status = "timeout" if is_timeout(exc) else "error"
        log.warning("stream from %s broke: %r", stream.arm.name, exc)
        yield sse_error(f"The stream from `{stream.arm.name}` broke off.", "upstream_stream_error")
        return
    except Exception:  # bytes the translator cannot read: the provider's failure, not a crash
        state.status = "error"
        log.exception("stream from %s could not be translated", stream.arm.name)
        yield sse_error(f"The stream from `{stream.arm.name}` could not be read.", "upstream_stream_error")
        return
    # The provider answered in full: the attempt is ok even if the client hangs up before reading
    # the last bytes (a client that reads [DONE] and closes at once would otherwise race this line).
    state.status = "ok"
    if rest:
        yield rest


def _mark_done(out: bytes, state: StreamState) -> None:
    """The canonical ``[DONE]`` is on its way: the answer is whole, whatever the client does next."""
    if DONE in out:
        state.status = "ok"


class RelayResponse(StreamingResponse):
    def __init__(
        self,
        stream: UpstreamStream,
        *,
        render: Render | None,
        headers: Mapping[str, str],
    ) -> None:
        self._stream = stream
        self._state = StreamState()
        events = canonical_events(stream, self._state)
        super().__init__(
            render(events) if render is not None else events,
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stream.finish(self._state.status)
            with anyio.CancelScope(shield=True):
                await self._stream.response.aclose()
