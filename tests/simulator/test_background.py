"""BackgroundServer binds its own socket: the port it reports is the one it listens on, race-free."""

from __future__ import annotations

import socket
from unittest import mock

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from simulator import BackgroundServer


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", _hello)])


def test_it_serves_on_a_port_the_os_picked_even_when_a_free_port_pick_is_taken() -> None:
    # Whatever a naive pick (a port nothing listened on a moment ago) would return is taken by a
    # listener of ours before the server starts: the server must not try to bind it.
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", 0))
        thief.listen()
        taken = thief.getsockname()[1]
        with (
            mock.patch("symphony.redis_server.free_port", return_value=taken),
            mock.patch("simulator.background.free_port", return_value=taken, create=True),
            BackgroundServer(APP) as server,
        ):
            assert server.port not in (0, taken)
            assert server.url == f"http://127.0.0.1:{server.port}"
            assert httpx.get(server.url).text == "hello"


def test_an_explicit_port_is_the_one_it_binds() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with BackgroundServer(APP, port=port) as server:
        assert server.port == port
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "hello"


def test_a_taken_explicit_port_fails_at_once_and_a_server_never_started_lets_its_port_go() -> None:
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", 0))
        thief.listen()
        with pytest.raises(OSError):
            BackgroundServer(APP, port=thief.getsockname()[1])
    unstarted = BackgroundServer(APP)
    unstarted.stop()
    with socket.socket() as again:
        again.bind(("127.0.0.1", unstarted.port))  # released by stop(): nothing holds it
