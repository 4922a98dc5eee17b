"""The engine end to end: real Redis, real Bytewax and chDB in a subprocess, read through the query API."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import orjson
import pytest
import redis

from cli import demo
from dataflows.redis_source import RedisStreamSource
from symphony import engine_client
from symphony.engine_client import EngineError
from symphony.redis_server import RedisServer
from symphony.stream import publish, publish_raw
from tests.engineutil import SHARDS, Engine, events, pair


@pytest.mark.parametrize("protocol", [2, 3])
def test_source_reads_in_batches_and_resumes_after_its_snapshot(
    redis_server: RedisServer, redis_client: redis.Redis, protocol: int
) -> None:
    publish_raw(redis_client, 0, [b"a", b"b", b"c"])
    redis_client.xadd("symphony:events:0", {b"other": b"field"})
    stop = threading.Event()
    source = RedisStreamSource(f"{redis_server.url}?protocol={protocol}", shards=2, batch_size=2, stop=stop)
    assert source.list_parts() == ["symphony:events:0", "symphony:events:1"]

    part = source.build_part("read", "symphony:events:0", None)
    assert [[entry.payload for entry in batch] for batch in part.next_batch()] == [[b"a", b"b"]]
    assert part.next_awake() is None  # a full batch: more may be waiting
    resumed = source.build_part("read", "symphony:events:0", part.snapshot())
    assert [[entry.payload for entry in batch] for batch in resumed.next_batch()] == [[b"c", None]]
    assert resumed.next_batch() == []
    assert resumed.next_awake() is not None  # an empty stream is polled, not blocked on
    assert source.build_part("read", "symphony:events:1", None).next_batch() == []
    stop.set()
    with pytest.raises(StopIteration):
        resumed.next_batch()


EXACT = (
    "SELECT (SELECT count() FROM {t} FINAL), (SELECT uniqExact(event_id) FROM {t}), (SELECT count() FROM {t})"
)


def test_events_reach_clickhouse_exactly_once(engine: Engine, redis_client: redis.Redis) -> None:
    n = 3000
    publish(redis_client, events(0, n // 2), SHARDS)  # waiting before the engine starts
    engine.start()
    publish(redis_client, events(n // 2, n), SHARDS)

    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", n, timeout=30)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", n, timeout=30)
    for table in ("decisions", "usage"):
        final, unique, raw = engine_client.query(engine.url, EXACT.format(t=table)).rows[0]
        assert (final, unique, raw) == (n, n, n), table  # nothing replayed in a clean run
    assert engine.count("SELECT sum(input_tokens) FROM usage FINAL") == sum(range(n))

    summary = engine_client.query(engine.url, demo.summary_sql())
    assert summary.columns == [
        "provider",
        "model",
        "requests",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "fallbacks",
        "challenger_share",
        "p50_ms",
        "p95_ms",
        "quota_remaining",
    ]
    anthropic_requests = len(range(0, n, 3))
    assert {(row[0], row[1]): row[2] for row in summary.rows} == {
        ("openai", "gpt-4o"): n - anthropic_requests,
        ("anthropic", "claude-sonnet"): anthropic_requests,
    }
    costs = {(row[0], row[1]): row[5] for row in summary.rows}  # 0.0001 USD a request (engineutil.pair)
    assert costs[("anthropic", "claude-sonnet")] == pytest.approx(anthropic_requests * 0.0001)
    assert all(row[6] == 0 and row[7] == 0 for row in summary.rows)  # no fallbacks, all champion

    # SIGTERM: the last epoch is finished and snapshotted, so a restart replays nothing.
    assert engine.stop() == 0
    publish(redis_client, events(n, n + 10), SHARDS)
    engine.start()
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage", n + 10, timeout=30)
    time.sleep(1.0)
    assert engine.count("SELECT count() FROM usage") == n + 10
    assert engine.stop() == 0


def test_an_engine_left_to_pick_its_port_listens_on_the_one_it_reports(engine: Engine) -> None:
    engine.start()  # the fixture's engine: port 0, so `--any-port`
    assert engine.port != 0 and int(engine.port_file.read_text()) == engine.port
    assert httpx.get(f"{engine.url}/health").json() == {"status": "ok", "service": "engine"}
    engine.kill()
    with pytest.raises(httpx.ConnectError):  # it was this engine that answered there
        httpx.get(f"{engine.url}/health")


def test_query_api(engine: Engine) -> None:
    engine.start()
    assert httpx.get(f"{engine.url}/health").json() == {"status": "ok", "service": "engine"}
    result = engine_client.query(engine.url, "SELECT 1 AS one, 'a' AS s, [1.5] AS xs, now64(3) > 0 AS t")
    assert result.columns == ["one", "s", "xs", "t"]
    assert result.rows == [[1, "a", [1.5], True]]

    for sql, message in [
        ("DROP TABLE decisions", "read-only"),
        ("INSERT INTO feedback (event_id) VALUES ('x')", "read-only"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("SELEKT 1", "read-only"),
        ("SELECT 1; DROP TABLE decisions", "one statement"),
        ("SELECT count( FROM decisions", "Syntax error"),
    ]:
        response = httpx.post(f"{engine.url}/query", json={"sql": sql})
        assert response.status_code == 400, sql
        assert message in response.json()["error"], sql
        with pytest.raises(EngineError, match=message):
            engine_client.query(engine.url, sql)
    assert httpx.post(f"{engine.url}/query", content=b"not json").status_code == 400
    assert engine.count("SELECT count() FROM decisions") == 0  # the DROP did nothing


def test_restart_after_sigkill_loses_and_duplicates_nothing(
    engine: Engine, redis_client: redis.Redis
) -> None:
    requests, chunk = 10_000, 125  # 20,000 events, 250 per publish
    progress = {"published": 0}
    failure: list[BaseException] = []

    def produce() -> None:
        client = redis.Redis.from_url(engine.redis_url)
        try:
            for start in range(0, requests, chunk):
                publish(client, events(start, start + chunk), SHARDS)
                progress["published"] = start + chunk
                time.sleep(0.03)
        except BaseException as exc:
            failure.append(exc)
        finally:
            client.close()

    engine.start()
    producer = threading.Thread(target=produce, name="producer")
    producer.start()
    try:
        engine_client.wait_for_count(engine.url, "SELECT count() FROM usage", 2000, timeout=30)
        assert engine.process is not None
        engine.process.send_signal(signal.SIGKILL)
        assert engine.process.wait(timeout=10) == -signal.SIGKILL
        engine.process = None
        published_at_kill = progress["published"]
        engine.start()  # same Redis, same chDB and recovery directories
    finally:
        producer.join(timeout=60)
    assert not failure, failure
    assert published_at_kill < requests, "the kill came after the producer had finished"

    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", requests, timeout=30)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", requests, timeout=30)
    time.sleep(1.0)  # anything written twice or more would have landed by now
    for table in ("decisions", "usage"):
        final, unique, raw = engine_client.query(engine.url, EXACT.format(t=table)).rows[0]
        # Raw rows may exceed ``requests`` (a batch re-sent after the kill); FINAL removes them.
        assert (final, unique) == (requests, requests), (table, raw)
    assert engine.count("SELECT sum(input_tokens) FROM usage FINAL") == sum(range(requests))
    assert engine.count("SELECT count() FROM dead_letters") == 0


def test_malformed_events_go_to_dead_letters(engine: Engine, redis_client: redis.Redis) -> None:
    good = events(0, 20)  # 20 requests: 20 decisions, 20 usage events
    usage = pair(100)[1].model_dump(mode="json")
    decision = pair(101)[0].model_dump(mode="json")
    malformed = {  # payload -> how its dead letter's reason starts
        b"{this is not json": "invalid JSON",
        orjson.dumps(usage)[:-1]: "invalid JSON",  # truncated
        orjson.dumps(usage | {"ttfb_ms": "fast", "input_tokens": -1}): "invalid usage event: ttfb_ms",
        orjson.dumps(decision | {"schema_version": 2}): "unknown schema_version 2",
        orjson.dumps({"type": "invoice", "event_id": usage["event_id"], "ts": 1}): "not an event",
        orjson.dumps(usage | {"surprise": 1}): "invalid usage event: surprise",  # unknown field
        orjson.dumps(usage).replace(
            b'"input_tokens":100', b'"input_tokens":18446744073709551616'
        ): "input_tokens does not fit",
    }
    publish(redis_client, good[:10], SHARDS)
    publish_raw(redis_client, 1, malformed)
    redis_client.xadd("symphony:events:2", {b"x": b"an entry without the e field"})
    engine.start()
    publish(redis_client, good[10:], SHARDS)

    engine_client.wait_for_count(engine.url, "SELECT count() FROM dead_letters FINAL", 8, timeout=30)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", 20, timeout=30)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", 20, timeout=30)
    rows = engine_client.query(engine.url, "SELECT stream, payload, reason FROM dead_letters FINAL").rows
    reasons = {payload.encode(): reason for stream, payload, reason in rows if stream == "symphony:events:1"}
    assert reasons.keys() == malformed.keys()
    for payload, start in malformed.items():
        assert reasons[payload].startswith(start), reasons[payload]
    assert "input_tokens" in reasons[orjson.dumps(usage | {"ttfb_ms": "fast", "input_tokens": -1})]
    assert ["symphony:events:2", "", "entry has no 'e' field"] in rows
    assert engine.count("SELECT count() FROM decisions") == 20  # the good events, once each
