"""Consumer lag per shard: how far each source partition is behind its stream.

Each source partition shares a ``Cursor`` with this process's ``LagMonitor``: the
entry id it has read up to and that entry's *position*, the number of entries ever
added to the shard up to and including it. Once a second the monitor reads
``XINFO STREAM`` for its shards and publishes, per consumer and shard, the hash
``symphony:metrics:lag:<consumer>:<shard>``:

- ``entries``: entries added after the cursor, ``added - position``. ``added`` is the
  stream's ``entries-added`` (Redis 7+), or on Redis 6 its length plus the entries
  that trimming removed (``symphony:stream:trimmed``, kept by ``dataflows.trimming``).
  A new partition starts at position 0, counts forward batch by batch and keeps
  its position in its recovery snapshot; whenever the monitor sees it caught up
  (position = ``added``) or reading from before the first entry (``added - length``)
  it re-anchors the position, which corrects any drift (an ``XDEL`` by someone
  else, or a trim counted a moment late on Redis 6). Absent while unknown (a
  snapshot from before positions existed, until the first anchor).
- ``seconds``: the age of the oldest unread entry (its id is its time), 0 when none.
- ``offset``, ``measured_at_ms``.

The monitor runs in its own thread, so the lag keeps growing in the metric while
a worker waits on ClickHouse. The engine's ``GET /metrics`` reads these hashes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import redis

from symphony import clock
from symphony.background_thread import BackgroundThread
from symphony.keys import LAG_PREFIX, TRIMMED_KEY
from symphony.redis_client import sync_redis
from symphony.stream import stream_name

log = logging.getLogger(__name__)

MEASURE_EVERY_S = 1.0


def lag_key(consumer: str, shard: int) -> str:
    return f"{LAG_PREFIX}{consumer}:{shard}"


def parse_id(entry_id: str | bytes) -> tuple[int, int]:
    """A stream entry id as ``(milliseconds, sequence)``, comparable in stream order."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class Cursor:
    """One partition's read position, shared by its worker (``advance``) and the monitor (``anchor``)."""

    def __init__(self, shard: int, entry_id: str, position: int | None) -> None:
        self.shard = shard
        self._lock = threading.Lock()
        self._entry_id = entry_id
        self._position = position

    def advance(self, entry_id: str, count: int) -> None:
        """The worker read ``count`` more entries, the last being ``entry_id``."""
        with self._lock:
            self._entry_id = entry_id
            if self._position is not None:
                self._position += count

    def read(self) -> tuple[str, int | None]:
        with self._lock:
            return self._entry_id, self._position

    def anchor(self, entry_id: str, position: int) -> None:
        """Set the position that the stream itself tells, if the cursor is still at ``entry_id``."""
        with self._lock:
            if self._entry_id == entry_id:
                self._position = position


@dataclass(frozen=True)
class Lag:
    consumer: str
    shard: int
    entries: int | None  # None until the cursor's position is known
    seconds: float
    offset: str
    measured_at_ms: int

    def fields(self) -> dict[str, str]:
        fields = {
            "seconds": f"{self.seconds:.3f}",
            "offset": self.offset,
            "measured_at_ms": str(self.measured_at_ms),
        }
        if self.entries is not None:
            fields["entries"] = str(self.entries)
        return fields


@dataclass(frozen=True)
class StreamInfo:
    length: int
    added: int  # entries ever added (entries-added, or length + trimmed)
    last_id: tuple[int, int]
    first_id: tuple[int, int] | None


def stream_info(reply: Any, trimmed: int) -> StreamInfo:
    """``XINFO STREAM``'s reply (or the error for a stream that does not exist yet) in one shape."""
    if not isinstance(reply, dict):
        return StreamInfo(0, trimmed, (0, 0), None)
    length = int(reply["length"])
    added = reply.get("entries-added")
    first = reply.get("first-entry")
    return StreamInfo(
        length=length,
        added=int(added) if added is not None else length + trimmed,
        last_id=parse_id(reply["last-generated-id"]),
        first_id=parse_id(first[0]) if first else None,
    )


def position_from(info: StreamInfo, entry_id: str) -> int | None:
    """The position of ``entry_id`` when the stream alone tells it, else None."""
    at = parse_id(entry_id)
    if at >= info.last_id:
        return info.added
    if info.first_id is None or at < info.first_id:
        return info.added - info.length  # every entry in the stream is after it
    return None


class LagMonitor(BackgroundThread):
    """Measures and publishes the lag of this process's source partitions, once a second."""

    thread_name = "lag-monitor"

    def __init__(self, redis_url: str, consumer: str, interval: float = MEASURE_EVERY_S) -> None:
        super().__init__()
        self._redis_url = redis_url
        self._consumer = consumer
        self._interval = interval
        self._cursors: dict[int, Cursor] = {}
        self._lock = threading.Lock()

    def register(self, cursor: Cursor) -> None:
        with self._lock:
            self._cursors[cursor.shard] = cursor

    def measure(self, client: redis.Redis) -> list[Lag]:
        """One round: measure every registered cursor and publish the results."""
        with self._lock:
            cursors = sorted(self._cursors.values(), key=lambda c: c.shard)
        if not cursors:
            return []
        positions = [cursor.read() for cursor in cursors]
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(TRIMMED_KEY)
        for cursor in cursors:
            pipe.xinfo_stream(stream_name(cursor.shard))
        trimmed_reply, *infos = pipe.execute(raise_on_error=False)
        trimmed = (
            {int(k): int(v) for k, v in trimmed_reply.items()} if isinstance(trimmed_reply, dict) else {}
        )

        lags: list[Lag] = []
        unread = client.pipeline(transaction=False)
        lagging: list[int] = []
        now_ms = clock.wall_ms()
        for index, (cursor, (entry_id, position), reply) in enumerate(
            zip(cursors, positions, infos, strict=True)
        ):
            info = stream_info(reply, trimmed.get(cursor.shard, 0))
            anchored = position_from(info, entry_id)
            if anchored is not None:
                cursor.anchor(entry_id, anchored)
                position = anchored
            entries = None if position is None else max(0, info.added - position)
            lags.append(Lag(self._consumer, cursor.shard, entries, 0.0, entry_id, now_ms))
            if parse_id(entry_id) < info.last_id:
                unread.xrange(stream_name(cursor.shard), f"({entry_id}", "+", count=1)
                lagging.append(index)
        if lagging:
            for index, reply in zip(lagging, unread.execute(raise_on_error=False), strict=True):
                if isinstance(reply, list) and reply:
                    oldest_ms = parse_id(reply[0][0])[0]
                    lag = lags[index]
                    lags[index] = Lag(
                        lag.consumer,
                        lag.shard,
                        lag.entries,
                        max(0.0, (now_ms - oldest_ms) / 1000),
                        lag.offset,
                        now_ms,
                    )
        publish = client.pipeline(transaction=False)
        for lag in lags:
            key = lag_key(lag.consumer, lag.shard)
            publish.delete(key)
            publish.hset(key, mapping=lag.fields())  # type: ignore[arg-type]
        publish.execute()
        return lags

    def _run(self) -> None:
        client = sync_redis(self._redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            while not self._stop.wait(self._interval):
                try:
                    self.measure(client)
                except (redis.RedisError, OSError) as exc:
                    log.warning("measuring consumer lag failed: %s", exc)
        finally:
            client.close()


def read_lags(client: redis.Redis, consumers: list[str], shards: int) -> list[Lag]:
    """The published lag of every consumer and shard that has one."""
    pipe = client.pipeline(transaction=False)
    keys = [(consumer, shard) for consumer in consumers for shard in range(shards)]
    for consumer, shard in keys:
        pipe.hgetall(lag_key(consumer, shard))
    lags: list[Lag] = []
    for (consumer, shard), raw in zip(keys, pipe.execute(), strict=True):
        if not raw:
            continue
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        entries = fields.get("entries")
        lags.append(
            Lag(
                consumer,
                shard,
                int(entries) if entries is not None else None,
                float(fields.get("seconds", "0")),
                fields.get("offset", ""),
                int(fields.get("measured_at_ms", "0")),
            )
        )
    return lags
