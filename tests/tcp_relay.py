"""A TCP relay in front of a real Redis, for tests that need the link between client and server to fail.

``TcpRelay`` listens on a free port and, for each client connection, opens one to the upstream
port and hands both to ``forward`` (a subclass's rule for what passes and when the link breaks). A
client that connects while the upstream is down is closed at once, as a refused connection.
"""

from __future__ import annotations

import socket
import threading


class TcpRelay:
    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def forward(self, client: socket.socket, server: socket.socket) -> None:
        """Start passing bytes both ways between ``client`` and ``server`` (threads of its own)."""
        raise NotImplementedError

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self._upstream))
            except OSError:  # the upstream is down: the client's connection attempt fails
                client.close()
                continue
            self.forward(client, server)


def received(sock: socket.socket) -> bytes:
    """What ``sock`` has to read, or b"" once it is closed or broken."""
    try:
        return sock.recv(65536)
    except OSError:
        return b""
