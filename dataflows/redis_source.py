"""A Bytewax source over the event stream: one partition per shard ``symphony:events:<n>``.

Each partition polls its stream with a non-blocking ``XREAD COUNT <batch>`` and
emits the whole reply as one item, so per-item overhead is paid per batch, not
per event. An empty read (or a Redis that does not answer) is paced with
``next_awake`` instead of blocking the worker. The partition's snapshot is
``(last entry id read, its position)``: a dataflow resumed from its recovery
snapshot continues just after that entry, so delivery is at-least-once and
ClickHouse de-duplicates by event_id. The position (entries ever added up to that
entry, when known) lets ``dataflows.lag`` count the entries still unread; the
recovery snapshot's entry id is also what ``dataflows.trimming`` trims below.

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

from dataflows.lag import Cursor, LagMonitor
from symphony import clock
from symphony.keys import STREAM_PREFIX
from symphony.redis_client import sync_redis
from symphony.redis_server import REDIS_ERRORS
from symphony.stream import EVENT_FIELD, stream_name

log = logging.getLogger(__name__)

START_ID = "0-0"  # a new partition reads its shard from the beginning
IDLE_PAUSE = timedelta(milliseconds=25)
RETRY_PAUSE = timedelta(seconds=1)


# A partition's snapshot: (last entry id read, entries ever added up to it or None when unknown).
SourceState = tuple[str, int | None]


def resume_point(state: object) -> SourceState:
    """Where a partition resumes from its snapshot (a bare entry id in snapshots before positions)."""
    if state is None:
        return START_ID, 0
    if isinstance(state, str):
        return state, None
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], str):
        entry_id, position = state
        return entry_id, position if isinstance(position, int) else None
    raise ValueError(f"not a stream source snapshot: {state!r}")


def _raw_entries(reply: object) -> list[list[Any]]:
    """The entries ``[[entry_id, [field, value, ...]], ...]`` of a one-stream XREAD reply, unparsed.

    The partition's client hands XREAD replies over as Redis sent them (parsing each
    entry into a dict costs more than the rest of reading): RESP2 gives
    ``[[stream, entries]]``, RESP3 ``{stream: entries}``; no entries give an empty reply.
    """
    if not reply:
        return []
    if isinstance(reply, dict):
        return cast(list[list[Any]], next(iter(reply.values())))
    return cast(list[list[Any]], cast(list[Any], reply)[0][1])


def _payload(fields: list[bytes] | dict[bytes, bytes]) -> bytes | None:
    if isinstance(fields, dict):
        # A Redis Cluster client parses entries whatever the callback: ``set_response_callback``
        # reaches the cluster object, not the per-node clients that read the replies.
        return fields.get(EVENT_FIELD)
    if len(fields) == 2 and fields[0] == EVENT_FIELD:
        return fields[1]
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == EVENT_FIELD:
            return fields[index + 1]
    return None


def _unparsed(response: object, **options: object) -> object:
    return response


class Entry(NamedTuple):
    """One stream entry: where it came from and its ``e`` field (None when the field is missing)."""

    stream: str
    entry_id: str
    payload: bytes | None


class _StreamPartition(StatefulSourcePartition[list[Entry], SourceState]):
    def __init__(
        self, client: redis.Redis, stream: str, cursor: Cursor, batch_size: int, stop: threading.Event
    ) -> None:
        self._client = client
        self._stop = stop
        self._stream = stream
        self._cursor = cursor
        self._last_id = cursor.read()[0]
        self._batch_size = batch_size
        self._awake: datetime | None = None

    @override
    def next_batch(self) -> list[list[Entry]]:
        if self._stop.is_set():
            raise StopIteration
        try:
            reply = self._client.xread({self._stream: self._last_id}, count=self._batch_size)
        except REDIS_ERRORS as exc:  # a Redis Cluster failing over included: its replica answers soon
            log.warning("reading %s failed, retrying in %s: %s", self._stream, RETRY_PAUSE, exc)
            self._awake = clock.real_utcnow() + RETRY_PAUSE
            return []
        entries = _raw_entries(reply)
        if not entries:
            self._awake = clock.real_utcnow() + IDLE_PAUSE
            return []
        # A full batch means more may be waiting: read again at once.
        self._awake = None if len(entries) >= self._batch_size else clock.real_utcnow() + IDLE_PAUSE
        stream = self._stream
        batch = [Entry(stream, entry_id.decode(), _payload(fields)) for entry_id, fields in entries]
        self._last_id = batch[-1].entry_id
        self._cursor.advance(self._last_id, len(batch))
        return [batch]

    @override
    def next_awake(self) -> datetime | None:
        return self._awake

    @override
    def snapshot(self) -> SourceState:
        return self._cursor.read()

    @override
    def close(self) -> None:
        self._client.close()


class RedisStreamSource(FixedPartitionedSource[list[Entry], SourceState]):
    """Batches of entries (``list[Entry]``) from the shards ``symphony:events:0 .. shards-1``.

    With a ``LagMonitor``, every partition built in this process reports its cursor to it.
    """

    def __init__(
        self,
        redis_url: str,
        shards: int,
        batch_size: int = 2000,
        stop: threading.Event | None = None,
        lag: LagMonitor | None = None,
    ) -> None:
        if shards < 1 or batch_size < 1:
            raise ValueError(f"need at least one shard and a positive batch size, got {shards}, {batch_size}")
        self._redis_url = redis_url
        self._shards = shards
        self._batch_size = batch_size
        self._stop = stop or threading.Event()
        self._lag = lag

    @override
    def list_parts(self) -> list[str]:
        return [stream_name(shard) for shard in range(self._shards)]

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: SourceState | str | None
    ) -> _StreamPartition:
        entry_id, position = resume_point(resume_state)
        cursor = Cursor(int(for_part.removeprefix(STREAM_PREFIX)), entry_id, position)
        if self._lag is not None:
            self._lag.register(cursor)
        client = sync_redis(self._redis_url, socket_timeout=5, socket_connect_timeout=5)
        client.set_response_callback("XREAD", _unparsed)
        log.info("reading %s after entry %s", for_part, entry_id)
        return _StreamPartition(client, for_part, cursor, self._batch_size, self._stop)
