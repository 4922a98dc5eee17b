"""Requests whose headers are too large in all are answered 431 before anything reads them.

The size is what the headers take on the wire: each name and value, plus ``": "``
and the line end. Bodies are limited where they are read (``proxy.edge.body``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from proxy import errors
from proxy.edge.auth import Render

MAX_HEADER_BYTES = 16 << 10


def headers_size(scope: Scope) -> int:
    return sum(len(name) + len(value) + 4 for name, value in scope["headers"])


class HeaderLimitMiddleware:
    def __init__(self, app: ASGIApp, render: Render, *, max_bytes: int = MAX_HEADER_BYTES) -> None:
        self._app = app
        self._render = render
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and headers_size(scope) > self._max_bytes:
            error = errors.ApiError(
                431,
                f"The request headers are larger than the limit of {self._max_bytes} bytes.",
                code="request_header_fields_too_large",
            )
            await self._render(scope["path"], error)(scope, receive, send)
            return
        await self._app(scope, receive, send)
