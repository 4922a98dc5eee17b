"""Consumer lag per shard against a real Redis: counted from the cursor, anchored by the stream itself."""

from __future__ import annotations

import threading
from typing import cast

import pytest
import redis

from dataflows import trimming
from dataflows.lag import Cursor, LagMonitor, read_lags
from dataflows.redis_source import RedisStreamSource, resume_point
from symphony.redis_server import RedisServer
from symphony.stream import publish_raw, stream_name


def ids(client: redis.Redis, shard: int) -> list[str]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream_name(shard)))
    return [entry_id.decode() for entry_id, _ in entries]


def test_lag_counts_unread_entries_through_reads_and_trims(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    publish_raw(redis_client, 0, [b"%d" % i for i in range(10)])
    entries = ids(redis_client, 0)
    monitor = LagMonitor(redis_server.url, "ingest")
    cursor = Cursor(0, "0-0", 0)
    monitor.register(cursor)

    (lag,) = monitor.measure(redis_client)
    assert (lag.shard, lag.entries, lag.offset) == (0, 10, "0-0")
    oldest_ms = int(entries[0].split("-")[0])  # an entry's id is the time it was added
    assert lag.seconds == max(0.0, (lag.measured_at_ms - oldest_ms) / 1000)

    cursor.advance(entries[3], 4)
    assert monitor.measure(redis_client)[0].entries == 6

    # Trimming below the cursor removes read entries only: the lag stays the same.
    redis_client.sadd(trimming.CONSUMERS_KEY, "ingest")
    trimming.publish_offsets(redis_client, "ingest", {0: entries[3]}, shards=1)
    assert trimming.trim(redis_client, shards=1) == {0: 3}
    assert monitor.measure(redis_client)[0].entries == 6

    cursor.advance(entries[9], 6)
    (caught_up,) = monitor.measure(redis_client)
    assert (caught_up.entries, caught_up.seconds) == (0, 0.0)
    assert read_lags(redis_client, ["ingest"], shards=2) == [caught_up]


def test_an_unknown_position_is_learnt_when_caught_up(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    publish_raw(redis_client, 1, [b"a", b"b", b"c"])
    entries = ids(redis_client, 1)
    monitor = LagMonitor(redis_server.url, "ingest")
    cursor = Cursor(1, entries[0], None)  # resumed from a snapshot without a position
    monitor.register(cursor)
    (lag,) = monitor.measure(redis_client)
    assert lag.entries is None
    # The age of the oldest unread entry: the cursor has read entries[0], so entries[1] (the three can
    # fall in different milliseconds).
    assert lag.seconds == max(0.0, (lag.measured_at_ms - int(entries[1].split("-")[0])) / 1000)
    assert "entries" not in lag.fields()

    cursor.advance(entries[2], 2)
    assert monitor.measure(redis_client)[0].entries == 0  # anchored: position = entries added
    publish_raw(redis_client, 1, [b"d", b"e"])
    assert monitor.measure(redis_client)[0].entries == 2


def test_lag_of_a_missing_stream_is_zero(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    monitor = LagMonitor(redis_server.url, "ingest")
    monitor.register(Cursor(3, "0-0", 0))
    (lag,) = monitor.measure(redis_client)
    assert (lag.entries, lag.seconds) == (0, 0.0)


@pytest.mark.parametrize("protocol", [2, 3])
def test_source_partitions_report_their_cursor_and_snapshot_its_position(
    redis_server: RedisServer, redis_client: redis.Redis, protocol: int
) -> None:
    publish_raw(redis_client, 0, [b"a", b"b", b"c"])
    monitor = LagMonitor(redis_server.url, "ingest")
    url = f"{redis_server.url}?protocol={protocol}"
    source = RedisStreamSource(url, shards=1, batch_size=2, stop=threading.Event(), lag=monitor)
    part = source.build_part("read", "symphony:events:0", None)
    assert monitor.measure(redis_client)[0].entries == 3
    part.next_batch()
    entry_id, position = part.snapshot()
    assert position == 2 and entry_id == ids(redis_client, 0)[1]
    assert monitor.measure(redis_client)[0].entries == 1

    # A bare entry id (a snapshot from before positions) still resumes after that entry.
    old = source.build_part("read", "symphony:events:0", entry_id)
    assert [[e.payload for e in batch] for batch in old.next_batch()] == [[b"c"]]
    assert resume_point(None) == ("0-0", 0)
    with pytest.raises(ValueError, match="not a stream source snapshot"):
        resume_point(42)
