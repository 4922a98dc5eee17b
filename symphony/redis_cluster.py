"""A local Redis Cluster from the bundled binary: masters with replicas, each its own process.

Tests and benchmarks start one to run the project against a real cluster (``REDIS_URL`` =
``redis+cluster://...``, see ``symphony.redis_client``). The bundled redis-server is 6.2: its
cluster bus listens on the client port + 10000, so nodes take ports below 55536 whose bus
port is free too, and slots are assigned with ``CLUSTER ADDSLOTS`` (``ADDSLOTSRANGE`` is 7.0).

Each master's replicas are attached with ``CLUSTER REPLICATE``; the cluster is ready when
every node reports ``cluster_state:ok`` and knows every other node, and every replica's link
to its master is up. ``node_timeout_ms`` (short here) is how long a silent master goes before
the others mark it failed and its replica is promoted (``stop_node`` and ``wait_failover``).
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from symphony import clock
from symphony.redis_client import cluster_url
from symphony.redis_server import REDIS_ERRORS, PortTaken, RedisServer

SLOTS = 16384
BUS_PORT_OFFSET = 10000


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def node_port() -> int:
    """A port whose cluster bus port (+10000) is free as well, both below 65536. Racy, as
    ``free_port`` is: a node that loses the race is started again on another."""
    while True:
        port = random.randint(20000, 55000)
        if _port_free(port) and _port_free(port + BUS_PORT_OFFSET):
            return port


def slot_ranges(masters: int) -> list[range]:
    """The 16384 slots split into ``masters`` contiguous ranges, as even as they divide."""
    bounds = [SLOTS * i // masters for i in range(masters + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(masters)]


@dataclass
class LocalCluster:
    """``masters`` masters, each with ``replicas`` replicas, data under ``data_dir``."""

    data_dir: Path
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = 1000
    nodes: list[RedisServer] = field(default_factory=list, init=False)
    _clients: dict[int, redis.Redis] = field(default_factory=dict, init=False, repr=False)  # by port

    @property
    def url(self) -> str:
        return cluster_url([("127.0.0.1", node.port) for node in self.nodes if node.process is not None])

    def start(self, timeout: float = 30.0) -> LocalCluster:
        if self.masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters to elect a replica in a failover")
        try:
            for index in range(self.masters * (1 + self.replicas)):
                self.nodes.append(self._start_node(index))
            self._form(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, index: int, attempts: int = 20) -> RedisServer:
        options = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # a replica may always stand for election, however long since it last heard its master
            "--cluster-replica-validity-factor", "0",
        )  # fmt: skip
        for _ in range(attempts):
            server = RedisServer(
                node_port(), self.data_dir / f"node-{index}", persist=False, extra_args=options
            )
            try:
                return server.start()
            except PortTaken:
                continue
        raise RuntimeError(f"no free port pair for cluster node {index} in {attempts} attempts")

    def _form(self, timeout: float) -> None:
        deadline = clock.monotonic() + timeout
        masters, replicas = self.nodes[: self.masters], self.nodes[self.masters :]
        for server, slots in zip(masters, slot_ranges(self.masters), strict=True):
            self._client(server).cluster("ADDSLOTS", *slots)
        first = self._client(self.nodes[0])
        for server in self.nodes[1:]:
            first.cluster("MEET", "127.0.0.1", server.port)
        self._wait(deadline, "every node to know every other", self._all_met)
        for index, replica in enumerate(replicas):
            master_id = self._client(masters[index % self.masters]).cluster("MYID")
            self._client(replica).cluster("REPLICATE", master_id)
        self._wait(deadline, "cluster_state:ok with every replica in sync", self.healthy)

    def _client(self, server: RedisServer) -> redis.Redis:
        """A direct client of one node (not a cluster client), kept until ``stop``."""
        if server.port not in self._clients:
            self._clients[server.port] = redis.Redis(
                host="127.0.0.1", port=server.port, socket_connect_timeout=1, socket_timeout=2
            )
        return self._clients[server.port]

    def _wait(self, deadline: float, what: str, ready: Callable[[], bool]) -> None:
        while not ready():
            if clock.monotonic() > deadline:
                raise RuntimeError(f"local Redis Cluster in {self.data_dir}: timed out waiting for {what}")
            time.sleep(0.1)

    def _all_met(self) -> bool:
        return all(self._known(server) == len(self.nodes) for server in self.nodes)

    def _nodes(self, server: RedisServer) -> list[dict[str, Any]]:
        """CLUSTER NODES as redis-py parses it: one dict per node (flags, slots, connected)."""
        parsed: dict[str, dict[str, Any]] = self._client(server).cluster("NODES")
        return list(parsed.values())

    def _known(self, server: RedisServer) -> int:
        return sum(
            1 for node in self._nodes(server) if node["connected"] and "handshake" not in node["flags"]
        )

    def running(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.process is not None]

    def healthy(self) -> bool:
        """Every running node says ``cluster_state:ok``; every running replica's link to its master is up."""
        try:
            for server in self.running():
                client = self._client(server)
                if client.cluster("INFO")["cluster_state"] != "ok":
                    return False
                info = client.info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
        except REDIS_ERRORS:
            return False
        return True

    def master_of(self, key: str) -> RedisServer:
        """The running node that serves ``key``'s slot now."""
        slot = self._client(self.running()[0]).cluster("KEYSLOT", key)
        for server in self.running():
            info = self._client(server).info("replication")
            if info["role"] == "master" and self._owns(server, int(slot)):
                return server
        raise RuntimeError(f"no running master serves slot {slot}")

    def _owns(self, server: RedisServer, slot: int) -> bool:
        myself = next(node for node in self._nodes(server) if "myself" in node["flags"])
        return any(int(low) <= slot <= int(high) for low, high in myself["slots"])

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Wait until the running nodes are ``healthy`` again (a failover done); the seconds it took."""
        started = clock.monotonic()
        self._wait(started + timeout, "the cluster to heal", self.healthy)
        return clock.monotonic() - started

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for server in self.nodes:
            server.stop()
