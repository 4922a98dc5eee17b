"""The upstream client against a real local server: bodies, streams, and no cookies carried over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy.adapters.base import UpstreamRequest
from proxy.attempts.upstream import new_http_client, send
from simulator.background import BackgroundServer

seen_cookies: list[str] = []


async def answer(request: Request) -> Response:
    """Answers the body back, sets a cookie, and notes any cookie it was sent."""
    seen_cookies.append(request.headers.get("cookie", ""))
    response = Response(await request.body(), status_code=200, media_type="application/json")
    response.set_cookie("session", "provider-secret")
    return response


async def chunks(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for index in range(3):
            yield f"data: {index}\n\n".encode()
            await asyncio.sleep(0.01)

    return StreamingResponse(parts(), media_type="text/event-stream")


def test_answers_streams_and_a_providers_cookie_never_travels_on() -> None:
    app = Starlette(
        routes=[Route("/answer", answer, methods=["POST"]), Route("/stream", chunks, methods=["POST"])]
    )
    server = BackgroundServer(app).start()

    # A host name, not an address: a cookie jar ignores cookies from IP addresses.
    base = server.url.replace("127.0.0.1", "localhost")

    async def scenario() -> tuple[bytes, int, bytes]:
        client = new_http_client()
        try:
            request = UpstreamRequest(f"{base}/answer", {"content-type": "application/json"}, b'{"a":1}')
            first = await send(client, request)
            body = await first.aread()
            await first.aclose()
            await (await send(client, request)).aclose()  # would carry the cookie if the client kept it
            streamed = await send(client, UpstreamRequest(f"{base}/stream", {}, b""))
            parts = b"".join([part async for part in streamed.aiter_raw()])
            await streamed.aclose()
            return body, first.status_code, parts
        finally:
            await client.close()

    try:
        body, status, parts = asyncio.run(scenario())
    finally:
        server.stop()
    assert (body, status) == (b'{"a":1}', 200)
    assert parts == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert seen_cookies == ["", ""]
