"""A Bytewax source over the event stream: one partition per shard ``symphony:events:<n>``.

Each partition polls its stream with a non-blocking ``XREAD COUNT <batch>`` and
emits the whole reply as one item, so per-item overhead is paid per batch, not
per event. An empty read (or a Redis that does not answer) is paced with
``next_awake`` instead of blocking the worker. The partition's snapshot is the
last entry id read: a dataflow resumed from its recovery snapshot continues just
after it, so delivery is at-least-once and ClickHouse de-duplicates by event_id.

Setting the ``stop`` event ends every partition (``StopIteration``): the dataflow
then finishes its last epoch, snapshots it and returns, which is how the engine
stops cleanly.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

import redis
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from typing_extensions import override

from symphony import clock
from symphony.stream import EVENT_FIELD, stream_name

log = logging.getLogger(__name__)

START_ID = "0-0"  # a new partition reads its shard from the beginning
IDLE_PAUSE = timedelta(milliseconds=25)
RETRY_PAUSE = timedelta(seconds=1)


StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]  # [(entry_id, {field: value}), ...]


def _entries(reply: object) -> StreamEntries:
    """The entries of a one-stream XREAD reply, in either protocol's shape.

    RESP2 gives ``[[stream, entries]]``, RESP3 ``{stream: [entries]}``; no entries give an empty reply.
    """
    if not reply:
        return []
    if isinstance(reply, dict):
        return cast(StreamEntries, next(iter(reply.values()))[0])
    return cast(StreamEntries, cast(list[Any], reply)[0][1])


class Entry(NamedTuple):
    """One stream entry: where it came from and its ``e`` field (None when the field is missing)."""

    stream: str
    entry_id: str
    payload: bytes | None


class _StreamPartition(StatefulSourcePartition[list[Entry], str]):
    def __init__(
        self, client: redis.Redis, stream: str, last_id: str, batch_size: int, stop: threading.Event
    ) -> None:
        self._client = client
        self._stop = stop
        self._stream = stream
        self._last_id = last_id
        self._batch_size = batch_size
        self._awake: datetime | None = None

    @override
    def next_batch(self) -> list[list[Entry]]:
        if self._stop.is_set():
            raise StopIteration
        try:
            reply = self._client.xread({self._stream: self._last_id}, count=self._batch_size)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("reading %s failed, retrying in %s: %s", self._stream, RETRY_PAUSE, exc)
            self._awake = clock.real_utcnow() + RETRY_PAUSE
            return []
        entries = _entries(reply)
        if not entries:
            self._awake = clock.real_utcnow() + IDLE_PAUSE
            return []
        # A full batch means more may be waiting: read again at once.
        self._awake = None if len(entries) >= self._batch_size else clock.real_utcnow() + IDLE_PAUSE
        batch = [
            Entry(self._stream, entry_id.decode(), fields.get(EVENT_FIELD)) for entry_id, fields in entries
        ]
        self._last_id = batch[-1].entry_id
        return [batch]

    @override
    def next_awake(self) -> datetime | None:
        return self._awake

    @override
    def snapshot(self) -> str:
        return self._last_id

    @override
    def close(self) -> None:
        self._client.close()


class RedisStreamSource(FixedPartitionedSource[list[Entry], str]):
    """Batches of entries (``list[Entry]``) from the shards ``symphony:events:0 .. shards-1``."""

    def __init__(
        self, redis_url: str, shards: int, batch_size: int = 2000, stop: threading.Event | None = None
    ) -> None:
        if shards < 1 or batch_size < 1:
            raise ValueError(f"need at least one shard and a positive batch size, got {shards}, {batch_size}")
        self._redis_url = redis_url
        self._shards = shards
        self._batch_size = batch_size
        self._stop = stop or threading.Event()

    @override
    def list_parts(self) -> list[str]:
        return [stream_name(shard) for shard in range(self._shards)]

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: str | None) -> _StreamPartition:
        client = redis.Redis.from_url(self._redis_url, socket_timeout=5, socket_connect_timeout=5)
        log.info("reading %s after entry %s", for_part, resume_state or START_ID)
        return _StreamPartition(client, for_part, resume_state or START_ID, self._batch_size, self._stop)
