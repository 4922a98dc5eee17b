"""Calling the provider behind an arm, over one pooled HTTP client.

In this issue every provider is served by the provider simulator, at
``{settings.simulator_url}/{provider}/v1/chat/completions`` in the OpenAI wire
format. Real provider endpoints (the catalog's ``base_url``), their keys and their
own wire formats (Anthropic, Gemini) come with the provider adapters in a later
issue; this module is where they plug in.

The client is ``httpx.AsyncClient`` over ``httpx_aiohttp.AiohttpTransport``: the
default httpx transport costs about four times the CPU per request
(``PERFORMANCE.md``).
"""

from __future__ import annotations

import asyncio

import httpx
import httpx_aiohttp

from symphony.events import AttemptStatus

RATE_LIMIT_PREFIX = "x-ratelimit-"
RETRY_AFTER = "retry-after"
TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=30.0, pool=10.0)
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30.0)
_REQUEST_HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}


def new_http_client() -> httpx.AsyncClient:
    """The one pooled client a proxy process uses for every upstream call."""
    return httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport(limits=LIMITS), timeout=TIMEOUT)


def attempt_status(status_code: int) -> AttemptStatus:
    if 200 <= status_code < 300:
        return "ok"
    if status_code == 429:
        return "429"
    if status_code >= 500:
        return "5xx"
    return "error"


def is_timeout(exc: httpx.HTTPError) -> bool:
    """Whether an upstream failure was a timeout.

    Asks the underlying error first: the aiohttp transport maps a refused
    connection to ``httpx.ConnectTimeout``.
    """
    if exc.__cause__ is not None:
        return isinstance(exc.__cause__, asyncio.TimeoutError)
    return isinstance(exc, httpx.TimeoutException)


def rate_limit_headers(headers: httpx.Headers) -> dict[str, str]:
    """The provider's rate-limit headers as observed (``x-ratelimit-*``, ``retry-after``)."""
    return {
        name: value
        for name, value in headers.items()
        if name.startswith(RATE_LIMIT_PREFIX) or name == RETRY_AFTER
    }


class Upstream:
    def __init__(self, client: httpx.AsyncClient, simulator_url: str) -> None:
        self._client = client
        self._base = simulator_url.rstrip("/")

    def chat_url(self, provider: str) -> str:
        return f"{self._base}/{provider}/v1/chat/completions"

    async def chat(self, provider: str, body: bytes) -> httpx.Response:
        """Send a chat completion; return once the status and headers are in (body unread)."""
        request = self._client.build_request(
            "POST", self.chat_url(provider), content=body, headers=_REQUEST_HEADERS
        )
        return await self._client.send(request, stream=True)
