"""Shared fixtures: every test that needs Redis gets its own bundled server on a free port.

The session starts from a clean environment: no variable that ``Settings`` or a provider
key would read survives from the developer's shell (a set ``OPENAI_API_KEY`` would send
real, paid requests from the stack tests; ``AUTH_DISABLED`` or ``TRAFFIC_SPLIT`` would
change what a test proves), and ``REDIS_URL`` points at a port held closed for the whole
session, so a test that forgets to pass its own Redis fails instead of using one on 6379.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.github_standin import GitHubStandIn, serve_github
from symphony.catalog import load_catalog
from symphony.redis_client import sync_redis
from symphony.redis_cluster import LocalCluster
from symphony.redis_server import RedisServer
from symphony.settings import Settings
from tests.engineutil import Engine
from tests.github_standin import REPOSITORY, TOKEN, Remote, make_repo


def symphony_variables() -> set[str]:
    """Every environment variable Settings or the catalog's provider keys would read."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        if isinstance(field.alias, str):
            names.add(field.alias.upper())
    for spec in load_catalog().providers.values():
        names |= {spec.key_env, f"{spec.key_env}_FILE"}
    return names


@pytest.fixture(scope="session", autouse=True)
def clean_environment() -> Iterator[str]:
    """Remove every Symphony variable for the session; REDIS_URL names a port nothing answers on."""
    held = socket.socket()  # bound, never listening: connections are refused, nobody else can bind it
    held.bind(("127.0.0.1", 0))
    dead_url = f"redis://127.0.0.1:{held.getsockname()[1]}/0"
    saved = {name: os.environ.pop(name) for name in symphony_variables() if name in os.environ}
    os.environ["REDIS_URL"] = dead_url
    # Spans exported every second, not every 5 (the default): a test waits a second for its spans.
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "1000"
    try:
        yield dead_url
    finally:
        os.environ.pop("REDIS_URL", None)
        os.environ.pop("OTEL_BSP_SCHEDULE_DELAY", None)
        os.environ.update(saved)
        held.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(port=0, data_dir=tmp_path / "redis", persist=False).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis that keeps its data across a stop and start, as a production one does (outage tests)."""
    server = RedisServer(port=0, data_dir=tmp_path / "redis-persistent", persist=True).start()
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


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Redis Cluster of 3 masters, each with a replica, shared by the session's tests (about 2 s to
    form). Tests that use it take ``cluster_client``, which empties it first; a test that stops a
    node starts its own ``LocalCluster``."""
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_client(redis_cluster: LocalCluster) -> Iterator[redis.Redis]:
    """A cluster client (``symphony.redis_client``) on the emptied shared cluster."""
    client = sync_redis(redis_cluster.url)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(params=["server", "cluster"])
def any_redis(request: pytest.FixtureRequest) -> RedisServer | LocalCluster:
    """A single server, then the shared cluster (emptied): for tests that must hold on both."""
    if request.param == "server":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server
    request.getfixturevalue("cluster_client")  # empties the cluster
    cluster: LocalCluster = request.getfixturevalue("redis_cluster")
    return cluster


@pytest.fixture
def engine(redis_server: RedisServer, tmp_path: Path) -> Iterator[Engine]:
    """An engine (not started; it picks its port at start), data in tmp_path/var, reading redis_server."""
    engine = Engine(redis_server.url, tmp_path / "var")
    engine.var_dir.mkdir()
    try:
        yield engine
    finally:
        engine.kill()


@pytest.fixture
def any_engine(any_redis: RedisServer | LocalCluster, tmp_path: Path) -> Iterator[tuple[Engine, redis.Redis]]:
    """An engine (not started) and a client, on a single server and then on the shared cluster."""
    engine = Engine(any_redis.url, tmp_path / "var")
    engine.var_dir.mkdir()
    client = sync_redis(any_redis.url)
    try:
        yield engine, client
    finally:
        engine.kill()
        client.close()


@pytest.fixture
def repo(tmp_path: Path) -> Remote:
    """A git checkout on ``main`` with the shipped champion, its ``origin`` a local bare repository."""
    return make_repo(tmp_path)


@pytest.fixture
def github(repo: Remote) -> Iterator[GitHubStandIn]:
    """The GitHub REST API's stand-in over ``repo``'s remote, recording its calls (``cli.github_standin``)."""
    with serve_github(repo.bare, REPOSITORY, TOKEN) as standin:
        yield standin
