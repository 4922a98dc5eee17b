"""The one place every process gets its Redis client: a single server or a Redis Cluster.

``REDIS_URL`` names either kind. ``redis://`` / ``rediss://`` / ``unix://`` is one server;
``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` over TLS) is a Redis
Cluster, reached through any of the seed nodes listed, which the client asks for the rest.
A cluster has one database, so a cluster URL names none (or ``/0``).

The cluster client is redis-py's ``RedisCluster``; it is handed back typed as ``redis.Redis``
(``redis.asyncio.Redis``) because the project calls only the commands both have, and every
multi-key call is kept within one hash slot (``symphony.keys``). The cluster tests
(``tests/symphony/test_redis_cluster.py`` and the cluster variants of the quota, budget and
stream tests) run those calls against a real cluster.

The proxy's hot path (``hot_path_redis``) takes ``symphony.redis_mux``'s client instead: one
connection per process, every command multiplexed on it, at about a ninth of redis-py's CPU per
command. The rest (the engine, the scheduler, the CLI) use redis-py's clients as they are.

The asyncio single-server client packs commands with hiredis: redis-py's asyncio connection
packs them in Python, one ``encode`` and one ``join`` per argument. A quota reservation sends
about 60 arguments, so at 500 requests a second that packing was the largest single cost in
the proxy's profile (``bench/profile_proxy.py``). hiredis packs the same bytes
(``tests/symphony/test_redis_client.py`` compares them) in a few microseconds. Anything it
cannot pack (a bool, a memoryview) goes to redis-py's packer, which raises the error redis-py
would.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster as cluster
from redis.asyncio.connection import Connection

from symphony.redis_mux import MultiplexedRedis

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
URL_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


class HiredisPackedConnection(Connection):
    """A redis-py asyncio connection whose commands hiredis packs."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if isinstance(name, str) and " " in name:  # "SCRIPT LOAD": Redis wants the words apart
            args = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


# How uvloop's RuntimeError for a write to a closed transport ends.
UVLOOP_CLOSED_HANDLE = "the handler is closed"


def _lost_mid_send(exc: Exception) -> bool:
    """Whether ``exc`` is a failover race redis-py lets through instead of a ``ConnectionError``.

    While a master fails over, redis-py 8.1's asyncio cluster client can write on a connection
    another task closed mid-send: ``AttributeError`` (``'NoneType' object has no attribute
    'writelines'``; redis-py issues #3815 and #3835 report its kin) when the writer is gone, and, on
    uvloop, the ``RuntimeError`` uvloop raises for a write to a closed transport ("unable to perform
    operation on <TCPTransport closed=True ...>; the handler is closed"), where asyncio's own loop
    only logs. No other ``RuntimeError`` is converted.
    """
    return isinstance(exc, AttributeError) or (
        isinstance(exc, RuntimeError) and str(exc).endswith(UVLOOP_CLOSED_HANDLE)
    )


class FailoverSafeCluster(aiocluster.RedisCluster):
    """redis-py's asyncio ``RedisCluster`` whose failover races surface as ``redis.ConnectionError``.

    Each was seen in ``tests/system/test_cluster_failover.py`` (about one run in six): the
    ``AttributeError`` as a 500 from the proxy, uvloop's ``RuntimeError`` as a batch of events the
    emitter dropped. Redis being away is something every caller handles (``QUOTA_FAIL_MODE``, the
    emitter's retries); those two are not (``_lost_mid_send``).
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except (AttributeError, RuntimeError) as exc:
            if not _lost_mid_send(exc):
                raise
            raise redis.ConnectionError(f"Redis Cluster connection lost during a command: {exc}") from exc

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> aiocluster.ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py, as it says
        return _FailoverSafePipeline(self, transaction)  # type: ignore[abstract]  # as redis-py builds its own


class _FailoverSafePipeline(aiocluster.ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except (AttributeError, RuntimeError) as exc:
            if not _lost_mid_send(exc):
                raise
            raise redis.ConnectionError(f"Redis Cluster connection lost during a pipeline: {exc}") from exc


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def cluster_url(nodes: list[tuple[str, int]], *, tls: bool = False) -> str:
    """``redis+cluster://host:port,...``: the URL of a cluster reached through ``nodes``."""
    scheme = "rediss+cluster" if tls else "redis+cluster"
    return f"{scheme}://" + ",".join(f"{host}:{port}" for host, port in nodes)


def cluster_seeds(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The seed nodes of a cluster URL and the connection options it carries (credentials, TLS).

    Raises ``ValueError`` saying what is wrong with a malformed one.
    """
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"{url!r} is not a cluster URL: use redis+cluster://host:port[,host:port...]")
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"a Redis Cluster has only database 0, the URL names {parts.path[1:]!r}")
    if parts.query or parts.fragment:
        raise ValueError("a cluster URL takes no query or fragment: pass options as settings")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    seeds = [_host_port(item) for item in hosts.split(",")]
    options: dict[str, Any] = {"ssl": CLUSTER_SCHEMES[parts.scheme]}
    if userinfo:
        username, _, password = userinfo.partition(":")
        options["username"] = unquote(username) or None
        options["password"] = unquote(password) or None
    return seeds, options


def _host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"cluster seed {item!r}: write host:port (a port from 1 to 65535)")
    return host, int(port)


def sync_redis(url: str, **options: Any) -> redis.Redis:
    """The synchronous client for ``url``: ``redis.Redis`` for one server, ``RedisCluster`` for a cluster."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, **options)
    seeds, url_options = cluster_seeds(url)
    nodes = [cluster.ClusterNode(host, port) for host, port in seeds]  # type: ignore[no-untyped-call]
    return cast(redis.Redis, cluster.RedisCluster(startup_nodes=nodes, **url_options, **options))


def hot_path_redis(url: str, **options: Any) -> aioredis.Redis:
    """The asyncio client for a process's hot path: one multiplexed connection to one server
    (``symphony.redis_mux``); a cluster or a TLS server gets ``async_redis``'s client."""
    if urlsplit(url).scheme in ("redis", "unix"):
        options.pop("max_connections", None)  # one connection
        return MultiplexedRedis.from_url(url, **options)
    return async_redis(url, **options)


def async_redis(url: str, **options: Any) -> aioredis.Redis:
    """The asyncio client for ``url``; one server's connections pack commands with hiredis."""
    if not is_cluster_url(url):
        return aioredis.Redis.from_url(url, connection_class=HiredisPackedConnection, **options)
    seeds, url_options = cluster_seeds(url)
    nodes = [aiocluster.ClusterNode(host, port) for host, port in seeds]
    return cast(aioredis.Redis, FailoverSafeCluster(startup_nodes=nodes, **url_options, **options))
