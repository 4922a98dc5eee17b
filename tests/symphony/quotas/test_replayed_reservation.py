"""A reservation Redis ran, then ran again by a client retrying it, counts once.

redis-py's clients retry a command whose connection failed, whether or not Redis ran it: the cluster
client closes every connection when a node answers CLUSTERDOWN during a failover (replies in flight
on the healthy nodes included) and sends their commands again. The link here is a real TCP relay in
front of a real Redis that forwards one reservation, lets Redis run it, and cuts the connection
instead of passing its reply on; redis-py's own retry then sends it again.

The model: one request and its tokens counted in each of the provider's windows, whatever the link did.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import redis

from symphony.quotas import QuotaStore, Reservation, bucket_values, load_quota_policy
from symphony.quotas.store import RESERVE_LUA, SETTLE_LUA
from symphony.redis_server import RedisServer
from tests.tcp_relay import TcpRelay, received

T0 = 1_767_225_600_000
LIMITS = load_quota_policy().limits("openai", "gpt-4o")


class ReplyCuttingRelay(TcpRelay):
    """Forwards a Redis connection; once armed, cuts it when the reply to an EVALSHA comes back."""

    def __init__(self, upstream_port: int) -> None:
        self.armed = threading.Event()
        self.cut = 0
        super().__init__(upstream_port)

    def forward(self, client: socket.socket, server: socket.socket) -> None:
        script_sent = threading.Event()
        threading.Thread(target=self._requests, args=(client, server, script_sent), daemon=True).start()
        threading.Thread(target=self._replies, args=(server, client, script_sent), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, script_sent: threading.Event) -> None:
        while data := received(client):
            if self.armed.is_set() and b"EVALSHA" in data:
                script_sent.set()
            server.sendall(data)

    def _replies(self, server: socket.socket, client: socket.socket, script_sent: threading.Event) -> None:
        while data := received(server):
            if script_sent.is_set() and self.armed.is_set():
                self.armed.clear()  # one cut: the retry goes through
                self.cut += 1
                for end in (client, server):
                    end.shutdown(socket.SHUT_RDWR)
                    end.close()
                return
            client.sendall(data)


@pytest.fixture
def relay(redis_server: RedisServer) -> Iterator[ReplyCuttingRelay]:
    relay = ReplyCuttingRelay(redis_server.port)
    try:
        yield relay
    finally:
        relay.close()


def _counted(client: redis.Redis) -> dict[str, int]:
    """Per window of the provider's, what its buckets hold."""
    return {limit.name: sum(bucket_values(client.hgetall(limit.key)).values()) for limit in LIMITS}


def test_a_reservation_run_twice_by_a_retry_counts_once_and_is_granted(
    relay: ReplyCuttingRelay, redis_client: redis.Redis
) -> None:
    for script in (RESERVE_LUA, SETTLE_LUA):  # loaded up front, so the cut reply is the grant's
        redis_client.script_load(script)
    through_relay = redis.Redis(port=relay.port)  # redis-py's default: retry on a lost connection
    store = QuotaStore(through_relay)
    relay.armed.set()
    made = store.reserve(LIMITS, T0, provider="openai", model="gpt-4o", tokens=100)
    assert relay.cut == 1  # Redis ran it, the reply never came, redis-py sent it again
    assert isinstance(made, Reservation)
    expected = {limit.name: 1 if limit.metric == "requests" else 100 for limit in LIMITS}
    assert _counted(redis_client) == expected
    assert dict(made.remaining) == {limit.name: limit.cap - expected[limit.name] for limit in LIMITS}
    store.settle(made, 40)
    settled = {name: 1 if amount == 1 else 40 for name, amount in expected.items()}
    assert _counted(redis_client) == settled
    through_relay.close()
