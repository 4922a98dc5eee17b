"""The same input gives the same tables with 1 worker, 2 workers, and a cluster of 2 processes.

Each run has its own Redis and its own chDB, fed the same events (decisions,
usage, feedback and malformed entries), and the tables are compared by row count,
sums and a checksum over the sorted keys. ``quota_snapshots`` is left out: it
samples quota state at most once per 5 s of event time per provider, in arrival
order, so its rows depend on how shards interleave, by design.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from symphony import engine_client
from symphony.events import Event, Feedback, new_id
from symphony.redis_server import RedisServer, free_ports
from symphony.stream import publish, publish_raw
from tests.engineutil import BASE_TS, SHARDS, Engine, events

REQUESTS = 3000
EVENT_TABLES = ("decisions", "usage", "feedback")
SUMS = (
    "SELECT (SELECT sum(input_tokens) FROM usage FINAL), (SELECT round(sum(latency_ms), 3) FROM usage FINAL),"
    " (SELECT round(sum(cost_usd), 6) FROM usage FINAL), (SELECT round(sum(score), 6) FROM feedback FINAL),"
    " (SELECT round(sum(propensity), 6) FROM decisions FINAL)"
)
MALFORMED = [b"{not json", b'{"type": "usage"}', b'{"type": "invoice", "ts": 1}']


def workload() -> list[Event]:
    feedback: list[Event] = [
        Feedback(
            event_id=new_id(BASE_TS + i), ts=BASE_TS + i, decision_id=f"d{i}", score=i % 5 / 4, source="user"
        )
        for i in range(0, REQUESTS, 7)
    ]
    return events(0, REQUESTS) + feedback


def fill(url: str, workload: list[Event]) -> None:
    client = redis.Redis.from_url(url)
    try:
        for start in range(0, len(workload), 1000):
            publish(client, workload[start : start + 1000], SHARDS)
        for shard in range(SHARDS):
            publish_raw(client, shard, MALFORMED)
    finally:
        client.close()


def tables(engine: Engine, expected: dict[str, int]) -> dict[str, object]:
    """Every table's digest once the engine has written everything expected."""
    for table, rows in expected.items():
        engine_client.wait_for_count(engine.url, f"SELECT count() FROM {table} FINAL", rows, timeout=60)
    digest: dict[str, object] = {table: engine.table_digest(table) for table in EVENT_TABLES}
    digest["dead_letters"] = engine.table_digest("dead_letters", key="payload")
    digest["sums"] = engine_client.query(engine.url, SUMS).rows[0]
    return digest


@pytest.fixture
def redis_urls(tmp_path: Path) -> Iterator[list[str]]:
    servers = [RedisServer(port=0, data_dir=tmp_path / f"redis{i}", persist=False).start() for i in range(2)]
    try:
        yield [server.url for server in servers]
    finally:
        for server in servers:
            server.stop()


def test_one_worker_two_workers_and_two_processes_give_the_same_tables(
    engine: Engine, redis_urls: list[str], tmp_path: Path
) -> None:
    work = workload()
    feedback = len(work) - 2 * REQUESTS
    expected = {
        "decisions": REQUESTS,
        "usage": REQUESTS,
        "feedback": feedback,
        "dead_letters": len(MALFORMED) * SHARDS,
    }
    fill(engine.redis_url, work)
    engine.start()  # one worker
    one = tables(engine, expected)
    assert one["decisions"][:2] == (REQUESTS, REQUESTS)  # type: ignore[index]
    assert one["feedback"][:2] == (feedback, feedback)  # type: ignore[index]
    engine.stop()

    two_workers = Engine(redis_urls[0], tmp_path / "w2", args=["-w", "2"])
    two_workers.var_dir.mkdir()
    fill(two_workers.redis_url, work)
    try:
        two_workers.start()
        assert tables(two_workers, expected) == one
        batches = two_workers.metrics()
        for worker in ("0", "1"):  # both workers wrote: the shards were shared between them
            assert batches.get(f'symphony_sink_batches_total{{worker="{worker}"}}', 0) > 0, batches
    finally:
        two_workers.kill()

    # Two processes on one chDB: process 1 writes through process 0, which owns the directory.
    var_dir = tmp_path / "cluster"
    var_dir.mkdir()
    # Bytewax's own cluster ports stay picks (racy: free_ports): every process must be told all of
    # them before any binds. The query API's port is the leader's pick, which the follower then gets.
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(2))
    leader = Engine(redis_urls[1], var_dir, args=["-i", "0", "-a", addresses])
    fill(leader.redis_url, work)
    follower: Engine | None = None
    try:
        leader.start()
        follower = Engine(
            redis_urls[1],
            var_dir,
            leader.port,
            args=["-i", "1", "-a", addresses],
            wait_ready=False,
            name="engine1",
        ).start()
        assert tables(leader, expected) == one
        own = leader.metrics()['symphony_sink_rows_written_total{table="usage"}']
        assert 0 < own < REQUESTS  # the rest came from process 1, through process 0's /insert
    finally:
        if follower is not None:
            follower.kill()
        leader.kill()
    assert follower is not None and "Traceback" not in follower.log.read_text()
