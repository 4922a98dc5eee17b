"""The OpenAI chat-completions wire format: OpenAI, Perplexity, Venice, Grok and DeepSeek.

The canonical form *is* this format, so requests go out as the client's body with
the arm's ``model`` and answers come back byte for byte: ``response()`` only reads
the usage, and the stream relay forwards whole events untouched except one, the
usage chunk, which the proxy always asks for (token counts for the usage event) and
drops again when the client did not ask for it.

What differs between these providers is in ``QUIRKS`` (parameter names they do not
know) and in the catalog's capabilities (what each model can serve), which
``Adapter.request()`` checks before anything is sent. A provider of one's own (vLLM,
Ollama, Azure OpenAI, a relay) gets the quirks every OpenAI-compatible server takes
(``max_tokens``, no ``developer`` role), its key as the catalog's ``auth`` says
(``Authorization: Bearer`` or Azure's ``api-key``), and none when it takes no key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.adapters.base import (
    Adapter,
    Answer,
    StreamTranslator,
    UpstreamFailure,
    UpstreamRequest,
    headers_show_limit_used_up,
)
from proxy.adapters.failures import (
    RETRY_AFTER,
    RETRY_AFTER_MS,
    attempt_status,
    describe,
    error_body,
    error_type,
    json_object,
    parse_duration,
    retry_after_s,
)
from proxy.adapters.sse import DONE

RATE_LIMIT_PREFIX = "x-ratelimit-"
JSON_HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}

_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_EVENT_END = b"\n\n"


@dataclass(frozen=True, slots=True)
class Quirks:
    """Where a provider departs from OpenAI's own parameters."""

    developer_role: bool = False  # knows the "developer" role; else it is sent as "system"
    max_completion_tokens: bool = False  # knows max_completion_tokens; else it is sent as max_tokens


OPENAI = Quirks(developer_role=True, max_completion_tokens=True)
QUIRKS: dict[str, Quirks] = {
    "openai": OPENAI,
    "grok": Quirks(max_completion_tokens=True),
    "venice": Quirks(max_completion_tokens=True),
    "perplexity": Quirks(),
    "deepseek": Quirks(),
}
# Providers of one's own: what any OpenAI-compatible server understands.
COMPATIBLE = Quirks()


def usage_tokens(usage: object) -> tuple[int, int]:
    """(input, output) tokens from an OpenAI ``usage`` object; zeros when absent."""
    if not isinstance(usage, dict):
        return 0, 0
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else 0), (completion if isinstance(completion, int) else 0)


class SseRelay(StreamTranslator):
    """Splits an OpenAI-format byte stream into whole SSE events, noting the usage chunk as it passes.

    Bytes are forwarded as soon as they complete an event (events end with a blank
    line, ``\\n\\n``; OpenAI-format upstreams use no ``\\r``). Only an event that holds
    a usage *object* is parsed; every other byte passes untouched.
    """

    def __init__(self, *, forward_usage: bool) -> None:
        self._forward_usage = forward_usage
        self._buffer = b""
        self._done = False
        self.usage: dict[str, Any] | None = None

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer + data if self._buffer else data
        end = buffer.rfind(_EVENT_END)
        if end < 0:
            self._buffer = buffer
            return b""
        complete, self._buffer = buffer[: end + 2], buffer[end + 2 :]
        self._done = complete.endswith(DONE)
        if _USAGE_OBJECT.search(complete) is None:
            return complete
        kept = [event + _EVENT_END for event in complete.split(_EVENT_END) if event and self._keep(event)]
        return b"".join(kept)

    def flush(self) -> bytes:
        """The unterminated last event, if any, and ``[DONE]`` if the upstream did not send it."""
        rest, self._buffer = self._buffer, b""
        if rest.strip() == DONE.strip():
            return DONE
        if rest.strip():
            rest = self.feed(rest.rstrip(b"\n") + _EVENT_END)
        return rest if self._done else rest + DONE

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
        self.input_tokens, self.output_tokens = usage_tokens(self.usage)
        return self._forward_usage or chunk.get("choices") != []


class OpenAICompatAdapter(Adapter):
    @property
    def quirks(self) -> Quirks:
        return QUIRKS.get(self.provider, COMPATIBLE)

    def _headers(self) -> dict[str, str]:
        """What every request sends: JSON, and the key as the provider takes it (if it takes one)."""
        if not self._api_key:
            return dict(JSON_HEADERS)
        if self.auth == "api-key":
            return {**JSON_HEADERS, "api-key": self._api_key}
        return {**JSON_HEADERS, "authorization": f"Bearer {self._api_key}"}

    def _provider_request(self, body: dict[str, Any], model: str, *, stream: bool) -> UpstreamRequest:
        out = {**body, "model": model, "stream": stream}
        if stream:
            # Always ask for the usage chunk so the usage event has token counts.
            options = out.get("stream_options")
            out["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        else:
            out.pop("stream_options", None)
        self._apply_quirks(out)
        return UpstreamRequest(f"{self.base_url}/chat/completions", self._headers(), orjson.dumps(out))

    def embeddings_request(self, body: dict[str, Any], model: str) -> UpstreamRequest:
        """``POST {base_url}/embeddings`` with the caller's body and the arm's model."""
        return UpstreamRequest(
            f"{self.base_url}/embeddings", self._headers(), orjson.dumps({**body, "model": model})
        )

    def _apply_quirks(self, out: dict[str, Any]) -> None:
        quirks = self.quirks
        if not quirks.max_completion_tokens and "max_completion_tokens" in out:
            limit = out.pop("max_completion_tokens")
            out.setdefault("max_tokens", limit)
        messages = out.get("messages")
        if not quirks.developer_role and isinstance(messages, list) and any(map(_is_developer, messages)):
            out["messages"] = [{**m, "role": "system"} if _is_developer(m) else m for m in messages]

    def response(self, body: bytes) -> Answer:
        answer = json_object(body)
        return Answer(body, *usage_tokens(answer.get("usage") if answer is not None else None))

    def stream(self, model: str, *, include_usage: bool) -> SseRelay:
        return SseRelay(forward_usage=include_usage)

    def failure(self, http_status: int, headers: Mapping[str, str], body: bytes) -> UpstreamFailure:
        error = json_object(body)
        if error is None or not isinstance(error.get("error"), dict):
            body = error_body(describe(body, http_status), error_type(http_status))
        retry = retry_after_s(headers)
        if retry is None and http_status == 429:
            retry = exhausted_reset_s(headers)
        rate_limit = self.rate_limits(headers)
        return UpstreamFailure(
            attempt_status(http_status),
            http_status,
            retry,
            body,
            rate_limit,
            model_limit_used_up=http_status == 429 and headers_show_limit_used_up(rate_limit),
        )

    def rate_limits(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {
            lower: value
            for name, value in headers.items()
            if (lower := name.lower()).startswith(RATE_LIMIT_PREFIX) or lower in (RETRY_AFTER, RETRY_AFTER_MS)
        }


def _is_developer(message: object) -> bool:
    return isinstance(message, dict) and message.get("role") == "developer"


def exhausted_reset_s(headers: Mapping[str, str]) -> float | None:
    """When an exhausted request or token budget resets (``x-ratelimit-reset-*``), if one is exhausted."""
    waits = []
    for metric in ("requests", "tokens"):
        remaining = headers.get(f"{RATE_LIMIT_PREFIX}remaining-{metric}")
        reset = headers.get(f"{RATE_LIMIT_PREFIX}reset-{metric}")
        if remaining is not None and remaining.strip() == "0" and reset is not None:
            seconds = parse_duration(reset)
            if seconds is not None:
                waits.append(seconds)
    return max(waits) if waits else None
