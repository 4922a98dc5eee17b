"""Shared fixtures: every test that needs Redis gets its own bundled server on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from symphony.redis_server import RedisServer, free_port
from tests.engineutil import Engine


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), data_dir=tmp_path / "redis", persist=False).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis that keeps its data across a stop and start, as a production one does (outage tests)."""
    server = RedisServer(port=free_port(), data_dir=tmp_path / "redis-persistent", persist=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def engine(redis_server: RedisServer, tmp_path: Path) -> Iterator[Engine]:
    """An engine (not started yet) on a free port, its data under tmp_path/var, reading redis_server."""
    engine = Engine(redis_server.url, tmp_path / "var", free_port())
    engine.var_dir.mkdir()
    try:
        yield engine
    finally:
        engine.kill()
