"""Serve an ASGI app on uvicorn in a background thread (tests and the in-process demo).

The server runs its own event loop (uvloop, httptools) in a daemon thread, so the
caller's thread stays free for blocking clients. ``stop()`` asks uvicorn to exit
gracefully: in-flight requests get ``GRACEFUL_SHUTDOWN_S`` to finish (a simulated
hang never would) and the app's lifespan shutdown runs.

The listening socket is bound here, not by uvicorn: without ``port`` the OS picks a free
one at the bind itself, so no other process can take it between a pick and the bind (as
with ``free_port()``), and ``url`` is known before ``start()``.
"""

from __future__ import annotations

import asyncio
import io
import socket
import sys
import threading
import time
import traceback
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from symphony.clock import monotonic

GRACEFUL_SHUTDOWN_S = 5


class _Server(uvicorn.Server):
    """uvicorn's server, keeping its event loop so a stuck shutdown can say what it waits for."""

    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: one the OS picks), not listening yet."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As uvicorn's own bind does: an explicit port a previous server just left is usable again.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class BackgroundServer:
    """``app`` on ``host:port``; without ``port``, on a port the OS picks when the socket binds."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self._socket = bind(host, port or 0)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},  # uvicorn listens on it, and closes it at shutdown
            name=f"uvicorn-{self.port}",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        """Start serving; return once the server accepts connections."""
        self._thread.start()
        deadline = monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server on {self.url} exited during start-up")
            if monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server on {self.url} did not start within {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Shut down gracefully (lifespan shutdown included) and wait for the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._server.started and not self._thread.is_alive():
            self._socket.close()  # never served (or failed at start-up): uvicorn did not close it
        if self._thread.is_alive():
            waits_for = self._what_it_waits_for()
            raise RuntimeError(f"server on {self.url} did not stop within {timeout}s\n{waits_for}")

    def _what_it_waits_for(self) -> str:
        """The server thread's stack and every task of its loop (read from this thread: best effort)."""
        out = io.StringIO()
        frame = sys._current_frames().get(self._thread.ident or 0)
        if frame is not None:
            out.write("server thread:\n" + "".join(traceback.format_stack(frame)))
        loop = self._server.loop
        tasks = asyncio.all_tasks(loop) if loop is not None else set()
        for task in tasks:
            out.write(f"task {task.get_name()}:\n")
            task.print_stack(file=out)
        return out.getvalue()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
