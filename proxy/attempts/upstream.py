"""The one pooled HTTP client every upstream call goes through: an ``aiohttp.ClientSession``.

aiohttp is the client of the measured floor (``bench/proxy_overhead.py``'s bare relay).
The proxy used httpx over an aiohttp transport; at 500 req/s the httpx layer alone took
about a tenth of the proxy's CPU (``bench/profile_proxy.py``), so the attempt loop now
reads aiohttp's response through ``UpstreamResponse``, which offers just what it needs.
What is sent, where, comes from the provider's adapter (``UpstreamRequest``); this module
only sends it.

The session keeps no cookies (``DummyCookieJar``): a provider's ``Set-Cookie`` must never
travel with another caller's request. It reads no proxy settings from the environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp

from proxy.adapters.base import UpstreamRequest

# The attempt loop bounds each attempt itself (first-token limit, request deadline);
# these are the transport's last word, e.g. for a stream that stalls mid-way. ``connect``
# includes the wait for a pooled connection.
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10.0, sock_connect=5.0, sock_read=120.0)
MAX_CONNECTIONS = 1000
KEEPALIVE_S = 30.0
# Errors a send or a body read can end in besides the attempt's own timeout.
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError)

HttpClient = aiohttp.ClientSession


def new_http_client() -> HttpClient:
    """The one pooled session a proxy process uses for every upstream call (in its event loop)."""
    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S)
    return aiohttp.ClientSession(
        connector=connector, timeout=TIMEOUT, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
    )


class UpstreamResponse:
    """A provider's answer once its status and headers are in; the body is read on demand."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status

    @property
    def is_success(self) -> bool:
        return 200 <= self._response.status < 300

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def aread(self) -> bytes:
        return await self._response.read()

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive (decoded if the provider compressed them)."""
        return self._response.content.iter_any()

    async def aclose(self) -> None:
        """Give the connection back to the pool, or close it when the body was not read to its end."""
        self._response.release()


async def send(client: HttpClient, request: UpstreamRequest) -> UpstreamResponse:
    """POST the request; return once the status and headers are in (body unread)."""
    response = await client.post(request.url, data=request.body, headers=request.headers)
    return UpstreamResponse(response)


def is_timeout(exc: BaseException) -> bool:
    """Whether an upstream failure was a timeout (aiohttp's are ``TimeoutError``s)."""
    return isinstance(exc, TimeoutError)
