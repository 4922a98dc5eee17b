"""The engine SIGKILLed at random points of a 100,000-event run, restarted each time: ClickHouse ends exact.

The producer keeps publishing throughout; trimming runs every half second, so
every restart also resumes on a stream trimmed below its recovery snapshot. The
seed is printed: ``CRASH_SEED=<seed> pytest tests/system/test_engine_crash.py`` replays
the same kill points.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import httpx
import redis

from symphony import engine_client
from symphony.stream import publish
from tests.engineutil import SHARDS, Engine, events, exact

REQUESTS = 50_000  # a decision and a usage event each: 100,000 events
CHUNK = 500
KILLS = 5


def test_sigkill_at_random_points_of_a_100k_event_run(engine: Engine, redis_client: redis.Redis) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.randrange(2**31)))
    rng = random.Random(seed)
    print(f"CRASH_SEED={seed}")
    progress = {"published": 0}
    failure: list[BaseException] = []

    def produce() -> None:
        client = redis.Redis.from_url(engine.redis_url)
        try:
            for start in range(0, REQUESTS, CHUNK):
                publish(client, events(start, start + CHUNK), SHARDS)
                progress["published"] = start + CHUNK
                time.sleep(0.12)
        except BaseException as exc:
            failure.append(exc)
        finally:
            client.close()

    engine.args = ["--trim-interval", "0.5"]
    engine.start()
    producer = threading.Thread(target=produce, name="producer")
    producer.start()
    kills_while_producing = 0
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 3.0))
            assert engine.process is not None
            engine.process.send_signal(signal.SIGKILL)
            assert engine.process.wait(timeout=10) == -signal.SIGKILL
            engine.process = None
            kills_while_producing += progress["published"] < REQUESTS
            engine.start()  # same Redis, chDB and recovery store
    finally:
        producer.join(timeout=120)
    assert not failure, failure
    assert kills_while_producing >= 3, (
        f"only {kills_while_producing} kills came while events arrived (seed {seed})"
    )

    for table in ("usage", "decisions"):
        engine_client.wait_for_count(engine.url, f"SELECT count() FROM {table} FINAL", REQUESTS, timeout=60)
    for table in ("decisions", "usage"):
        final, unique, _ = exact(engine, table)  # raw rows may repeat: the test below shows when
        assert (final, unique) == (REQUESTS, REQUESTS), (table, seed)

    sums = engine_client.query(
        engine.url,
        "SELECT sum(input_tokens), sum(output_tokens), round(sum(cost_usd), 6), sum(latency_ms)"
        " FROM usage FINAL",
    ).rows[0]
    assert sums == [
        sum(range(REQUESTS)),
        10 * REQUESTS,
        round(0.0001 * REQUESTS, 6),
        sum(100.0 + i % 100 for i in range(REQUESTS)),
    ], seed
    assert engine.count("SELECT count() FROM decisions FINAL WHERE provider = 'anthropic'") == len(
        range(0, REQUESTS, 3)
    )
    assert engine.count("SELECT count() FROM dead_letters") == 0


def test_a_kill_between_an_insert_and_its_snapshot_replays_the_epoch_invisibly(
    any_engine: tuple[Engine, redis.Redis],
) -> None:
    """The one instant that makes duplicates: rows in ClickHouse, their epoch not yet in a snapshot
    (on one Redis server, and on a Redis Cluster whose stream shards live on three masters)."""
    engine, redis_client = any_engine
    engine.args = ["--test-faults"]
    engine.start()
    publish(redis_client, events(0, 500), SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", 500)
    httpx.post(f"{engine.url}/faults", json={"die_after_insert": "decisions"}).raise_for_status()
    publish(redis_client, events(500, 1000), SHARDS)
    assert engine.process is not None
    assert engine.process.wait(timeout=30) == 137  # died right after the insert landed
    engine.process = None
    engine.args = []
    engine.start()  # replays the epoch whose snapshot never came
    for table in ("usage", "decisions"):
        engine_client.wait_for_count(engine.url, f"SELECT count() FROM {table} FINAL", 1000)
    for table in ("decisions", "usage"):
        final, unique, _ = exact(engine, table)
        assert (final, unique) == (1000, 1000), table
    # The batch that landed just before the kill was written again by the replay, and FINAL hides it.
    second = "toUInt32(substring(request_id, 5)) >= 500"
    assert engine.count(f"SELECT count() FROM decisions WHERE {second}") > 500
    assert engine.count(f"SELECT count() FROM decisions FINAL WHERE {second}") == 500
