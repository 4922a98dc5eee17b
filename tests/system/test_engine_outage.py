"""ClickHouse goes away and comes back: the sink retries, the stream keeps the events, none lost or doubled.

There is no ClickHouse server on this machine (only embedded chDB), so the outage
is injected at the store: the engine runs with ``--test-faults`` and its store
refuses every insert for a while with the error clickhouse-connect raises for a
server that does not answer (``OperationalError``), or lets inserts land and then
fails them as a lost reply would. Everything else is real: Redis, Bytewax, chDB.
"""

from __future__ import annotations

import signal
import time

import httpx
import redis

from symphony import engine_client
from symphony.stream import publish, stream_name
from tests.engineutil import SHARDS, Engine, events, exact


def inject(engine: Engine, **fault: float) -> None:
    httpx.post(f"{engine.url}/faults", json=fault, timeout=5).raise_for_status()


def stream_entries(client: redis.Redis) -> int:
    return sum(int(client.xlen(stream_name(shard))) for shard in range(SHARDS))


def total(samples: dict[str, float], name: str) -> float:
    return sum(value for key, value in samples.items() if key.split("{")[0] == name)


def test_outage_then_lost_acks_lose_and_double_nothing(engine: Engine, redis_client: redis.Redis) -> None:
    engine.args = ["--test-faults"]
    engine.start()
    publish(redis_client, events(0, 1000), SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", 1000)

    # ClickHouse refuses writes for 3 s while 2,000 more requests arrive, in chunks.
    inject(engine, outage_s=3.0)
    for start in range(1000, 3000, 200):
        publish(redis_client, events(start, start + 200), SHARDS)
        time.sleep(0.1)
    assert engine.count("SELECT count() FROM usage") == 1000  # nothing written meanwhile
    assert stream_entries(redis_client) >= 4000  # every event of the outage still in the stream
    during = engine.metrics()
    assert total(during, "symphony_sink_retries_total") >= 1
    assert total(during, "symphony_sink_failing_seconds") > 0
    assert total(during, "symphony_consumer_lag") > 0  # the lag shows while the worker waits

    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", 3000, timeout=30)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", 3000, timeout=30)
    for table in ("decisions", "usage"):
        # Only the tables not yet written are sent again: not even a raw duplicate.
        assert exact(engine, table) == (3000, 3000, 3000), table

    # Replies lost after the insert landed: the writer sends again, FINAL still counts each event once.
    inject(engine, lost_acks=3)
    publish(redis_client, events(3000, 4000), SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", 4000, timeout=30)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", 4000, timeout=30)
    raw = 0
    for table in ("decisions", "usage"):
        final, unique, rows = exact(engine, table)
        assert (final, unique) == (4000, 4000), table
        raw += rows
    assert raw > 8000  # the resent batches did land twice, and FINAL hid them
    assert engine.count("SELECT sum(input_tokens) FROM usage FINAL") == sum(range(4000))
    assert engine.count("SELECT count() FROM dead_letters") == 0

    log = engine.log.read_text()
    assert "injected outage" in log and "retrying in" in log
    assert "after" in log and "failed attempts" in log
    deadline = time.monotonic() + 10
    while total(engine.metrics(), "symphony_consumer_lag") > 0:
        assert time.monotonic() < deadline, "the lag did not come back to 0"
        time.sleep(0.2)
    assert total(engine.metrics(), "symphony_sink_failing_seconds") == 0

    # Asked to stop during an outage: the engine gives up the unwritten epoch and exits; a restart writes it.
    inject(engine, outage_s=60.0)
    publish(redis_client, events(4000, 4500), SHARDS)
    time.sleep(0.5)
    assert engine.process is not None
    engine.process.send_signal(signal.SIGTERM)
    assert engine.process.wait(timeout=15) == 3  # EXIT_STOPPED_IN_OUTAGE
    engine.process = None
    assert "stopping while ClickHouse refuses writes" in engine.log.read_text()
    engine.start()
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", 4500, timeout=30)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", 4500, timeout=30)
    assert exact(engine, "usage")[:2] == (4500, 4500)
