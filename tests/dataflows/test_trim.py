"""Stream trimming: only below what every consumer has durably written, and never a loss across a restart."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import cast

import bytewax.operators as op
import httpx
import redis
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main

from dataflows import trimming
from dataflows.redis_source import Entry, RedisStreamSource
from symphony import engine_client
from symphony.keys import TRIMMED_KEY
from symphony.redis_server import RedisServer
from symphony.stream import publish, publish_raw, stream_name
from tests.engineutil import SHARDS, Engine, events, exact


def ids(client: redis.Redis, shard: int) -> list[str]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream_name(shard)))
    return [entry_id.decode() for entry_id, _ in entries]


def test_trim_waits_for_every_registered_consumer(redis_client: redis.Redis) -> None:
    for shard in (0, 1):
        publish_raw(redis_client, shard, [b"%d" % i for i in range(10)])
    zero, one = ids(redis_client, 0), ids(redis_client, 1)
    assert trimming.trim(redis_client, shards=2) == {}  # no consumer: nothing is known to be safe

    trimming.register(redis_client, "ingest")
    trimming.register(redis_client, "learner")
    trimming.publish_offsets(redis_client, "ingest", {0: zero[6], 1: one[8]}, shards=2)
    assert trimming.trim(redis_client, shards=2) == {}  # the learner has published nothing yet

    trimming.publish_offsets(redis_client, "learner", {0: zero[4]}, shards=2)
    assert trimming.trim(redis_client, shards=2) == {0: 4}  # the slower consumer bounds it
    assert ids(redis_client, 0) == zero[4:]  # its offset entry is kept
    assert ids(redis_client, 1) == one  # the learner has no offset for shard 1

    trimming.deregister(redis_client, "learner", shards=2)
    assert trimming.trim(redis_client, shards=2) == {0: 2, 1: 8}
    assert redis_client.hgetall(TRIMMED_KEY) == {b"0": b"6", b"1": b"8"}

    # A consumer with a new recovery store has no safe offsets: its old ones must not be used.
    publish_raw(redis_client, 0, [b"late"])
    trimming.publish_offsets(redis_client, "ingest", {}, shards=2)
    assert redis_client.get(trimming.offset_key("ingest", 0)) is None
    assert trimming.trim(redis_client, shards=2) == {}


def _read_stream(redis_url: str, db_dir: Path, shards: int) -> list[list[Entry]]:
    """Run a real Bytewax flow over the source with recovery until it has read everything."""
    stop = threading.Event()
    flow = Dataflow("trimtest")
    out: list[list[Entry]] = []
    op.output(
        "out", op.input("read", flow, RedisStreamSource(redis_url, shards, stop=stop)), TestingSink(out)
    )
    threading.Timer(1.0, stop.set).start()
    recovery = RecoveryConfig(db_dir)  # type: ignore[no-untyped-call]
    run_main(flow, epoch_interval=timedelta(milliseconds=50), recovery_config=recovery)  # type: ignore[no-untyped-call]
    return out


def test_committed_offsets_are_what_a_resume_continues_after(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    publish_raw(redis_client, 0, [b"a", b"b", b"c"])
    publish_raw(redis_client, 1, [b"d"])
    db_dir = tmp_path / "recovery"
    db_dir.mkdir()
    assert trimming.committed_offsets(db_dir, "trimtest.read") == {}  # no store yet
    init_db_dir(db_dir, 1)  # type: ignore[no-untyped-call]
    assert trimming.committed_offsets(db_dir, "trimtest.read") == {}  # nothing committed yet

    batches = _read_stream(redis_server.url, db_dir, shards=2)
    assert sorted(e.payload or b"" for batch in batches for e in batch) == [b"a", b"b", b"c", b"d"]
    offsets = trimming.committed_offsets(db_dir, "trimtest.read")
    assert offsets == {0: ids(redis_client, 0)[-1], 1: ids(redis_client, 1)[-1]}

    # The same store after another run that read more: the offsets follow the commits.
    publish_raw(redis_client, 0, [b"e"])
    assert [e.payload for b in _read_stream(redis_server.url, db_dir, shards=2) for e in b] == [b"e"]
    assert trimming.committed_offsets(db_dir, "trimtest.read")[0] == ids(redis_client, 0)[-1]

    # A worker whose frontier had not passed the snapshot's epoch: that snapshot is not safe.
    with sqlite3.connect(db_dir / "part-0.sqlite3") as db:
        db.execute("UPDATE fronts SET worker_frontier = 0")
        db.execute("UPDATE exs SET resume_epoch = 0")
    assert trimming.committed_offsets(db_dir, "trimtest.read") == {}


def test_trimming_loses_nothing_across_a_sigkill_restart(engine: Engine, redis_client: redis.Redis) -> None:
    requests, chunk = 6000, 250
    engine.args = ["--trim-interval", "0.2", "--test-faults"]
    engine.start()
    publish(redis_client, events(0, requests // 2), SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", requests // 2, timeout=30)
    deadline = time.monotonic() + 15
    while len(redis_client.hgetall(TRIMMED_KEY)) < SHARDS:  # every shard trimmed at least once
        assert time.monotonic() < deadline, "the stream was not trimmed"
        time.sleep(0.1)

    # ClickHouse refuses writes: events are read but not written, while the trimmer keeps running.
    httpx.post(f"{engine.url}/faults", json={"outage_s": 60}, timeout=5).raise_for_status()
    for start in range(requests // 2, requests * 3 // 4, chunk):
        publish(redis_client, events(start, start + chunk), SHARDS)
    time.sleep(1.0)  # several trim rounds
    assert engine.count("SELECT count() FROM usage") == requests // 2

    # Killed then; the restart (ClickHouse back) resumes from the recovery snapshot, above the trim point.
    assert engine.process is not None
    engine.process.send_signal(signal.SIGKILL)
    engine.process.wait(timeout=10)
    engine.process = None
    for start in range(requests * 3 // 4, requests, chunk):
        publish(redis_client, events(start, start + chunk), SHARDS)
    engine.start()

    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", requests, timeout=30)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", requests, timeout=30)
    for table in ("decisions", "usage"):
        final, unique, _ = exact(engine, table)
        assert (final, unique) == (requests, requests), table
    assert engine.count("SELECT sum(input_tokens) FROM usage FINAL") == sum(range(requests))

    # The trimmer waits for the restarted engine's first committed snapshots; on a loaded 2-core CI
    # machine that once took just over 15 s, so the wait is generous (what is checked is unchanged).
    deadline = time.monotonic() + 45
    while sum(int(redis_client.xlen(stream_name(s))) for s in range(SHARDS)) > 2 * SHARDS:
        assert time.monotonic() < deadline, "the stream was not trimmed after the restart"
        time.sleep(0.1)
    trimmed = sum(int(v) for v in redis_client.hvals(TRIMMED_KEY))
    remaining = sum(int(redis_client.xlen(stream_name(s))) for s in range(SHARDS))
    assert trimmed + remaining == 2 * requests  # every entry either trimmed after its write, or still there
