"""The one pooled HTTP client every upstream call goes through.

The client is ``httpx.AsyncClient`` over ``httpx_aiohttp.AiohttpTransport``: the
default httpx transport costs about four times the CPU per request
(``PERFORMANCE.md``). What is sent, where, comes from the provider's adapter
(``UpstreamRequest``); this module only sends it.
"""

from __future__ import annotations

import asyncio

import httpx
import httpx_aiohttp

from proxy.adapters.base import UpstreamRequest

# The attempt loop bounds each attempt itself (first-token limit, request deadline);
# these are the transport's last word, e.g. for a stream that stalls mid-way.
TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=30.0, pool=10.0)
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30.0)
# Errors a send or a body read can end in besides a timeout: the transport's, and
# the socket's when the transport lets one through.
TRANSPORT_ERRORS = (httpx.HTTPError, OSError)


def new_http_client() -> httpx.AsyncClient:
    """The one pooled client a proxy process uses for every upstream call."""
    return httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport(limits=LIMITS), timeout=TIMEOUT)


async def send(client: httpx.AsyncClient, request: UpstreamRequest) -> httpx.Response:
    """POST the request; return once the status and headers are in (body unread)."""
    built = client.build_request("POST", request.url, content=request.body, headers=request.headers)
    return await client.send(built, stream=True)


def is_timeout(exc: BaseException) -> bool:
    """Whether an upstream failure was a timeout.

    Asks the underlying error first: the aiohttp transport maps a refused
    connection to ``httpx.ConnectTimeout``.
    """
    if isinstance(exc, TimeoutError):
        return True
    if exc.__cause__ is not None:
        return isinstance(exc.__cause__, asyncio.TimeoutError)
    return isinstance(exc, httpx.TimeoutException)
