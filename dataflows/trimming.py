"""Trimming the event stream, only below what every consumer has durably written.

A consumer's *safe offset* for a shard is the entry id its source partition would
resume after if it restarted now: the offset in its last committed Bytewax
recovery snapshot. Bytewax commits an epoch only after every step, the sinks'
writes included, has finished it, so every entry up to that offset is in
ClickHouse and in every stateful step's snapshot; nothing a recovery replays lies
below it. It is read from the recovery store itself (``committed_offsets``, the
same query Bytewax 0.21 resumes with), never from what a worker has merely read.

Redis keys:

- ``symphony:consumers``: the set of consumers whose offsets bound trimming. A
  consumer registers before it reads; one that is gone for good must be removed
  (``deregister``), or trimming stops at its last offset.
- ``symphony:offsets:<consumer>:<shard>``: the consumer's safe offset.
- ``symphony:stream:trimmed``: entries removed so far per shard (for ``dataflows.lag``).

``trim`` runs ``XTRIM <stream> MINID <min safe offset over consumers>`` per shard,
and skips a shard for which any registered consumer has published no offset yet.
"""

from __future__ import annotations

import logging
import pickle
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import redis

from dataflows.lag import parse_id
from dataflows.redis_source import resume_point
from symphony.background_thread import BackgroundThread
from symphony.keys import CONSUMERS_KEY, OFFSETS_PREFIX, STREAM_PREFIX, TRIMMED_KEY
from symphony.redis_client import sync_redis
from symphony.stream import stream_name

log = logging.getLogger(__name__)

TRIM_EVERY_S = 5.0


def offset_key(consumer: str, shard: int) -> str:
    return f"{OFFSETS_PREFIX}{consumer}:{shard}"


def _rows(path: Path, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    # Read-only and short: Bytewax keeps writing the file meanwhile.
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)) as db:
        return list(db.execute(sql, parameters))


def committed_offsets(db_dir: Path, step_id: str) -> dict[int, str]:
    """Per shard, the entry id a resume from the recovery store at ``db_dir`` would continue after.

    Empty when the store is missing, incomplete (a partition of the cluster's is
    not in this directory) or has never committed an epoch: nothing is safe then.
    """
    parts = sorted(db_dir.glob("*.sqlite3"))
    if not parts:
        return {}
    found: set[int] = set()
    counts: set[int] = set()
    executions: list[tuple[int, int, int]] = []
    frontiers: list[tuple[int, int, int]] = []
    for part in parts:
        for index, count in _rows(part, "SELECT part_index, part_count FROM parts"):
            found.add(int(index))  # type: ignore[call-overload]
            counts.add(int(count))  # type: ignore[call-overload]
        executions += [
            (int(e), int(w), int(r))  # type: ignore[call-overload]
            for e, w, r in _rows(part, "SELECT ex_num, worker_count, resume_epoch FROM exs")
        ]
        frontiers += [
            (int(e), int(w), int(f))  # type: ignore[call-overload]
            for e, w, f in _rows(part, "SELECT ex_num, worker_index, worker_frontier FROM fronts")
        ]
    if len(counts) != 1 or found != set(range(counts.pop())) or not executions:
        return {}
    # The resume epoch, as Bytewax computes it: the slowest worker's frontier in the last execution.
    ex_num, worker_count, resume_epoch = max(executions)
    frontier = dict.fromkeys(range(worker_count), resume_epoch)
    for execution, worker, worker_frontier in frontiers:
        if execution == ex_num and worker in frontier:
            frontier[worker] = max(frontier[worker], worker_frontier)
    resume = min(frontier.values())

    latest: dict[str, tuple[int, bytes | None]] = {}
    for part in parts:
        for key, epoch, change in _rows(
            part,
            "SELECT state_key, snap_epoch, ser_change FROM snaps WHERE step_id = ? AND snap_epoch < ?",
            (step_id, resume),
        ):
            name, at = str(key), int(epoch)  # type: ignore[call-overload]
            if name not in latest or at > latest[name][0]:
                latest[name] = (at, change if isinstance(change, bytes) else None)
    offsets: dict[int, str] = {}
    for name, (_, change) in latest.items():
        if change is None or not name.startswith(STREAM_PREFIX):
            continue
        # Bytewax pickles snapshots; this is the engine's own recovery store.
        offsets[int(name.removeprefix(STREAM_PREFIX))] = resume_point(pickle.loads(change))[0]
    return offsets


def register(client: redis.Redis, consumer: str) -> None:
    """From now on, trimming waits for ``consumer``'s offsets."""
    client.sadd(CONSUMERS_KEY, consumer)


def deregister(client: redis.Redis, consumer: str, shards: int) -> None:
    """Forget a consumer that is gone for good, so that trimming no longer waits for it."""
    pipe = client.pipeline(transaction=False)
    pipe.srem(CONSUMERS_KEY, consumer)
    for shard in range(shards):  # one key per DEL: a Redis Cluster pipeline cannot span slots in one
        pipe.delete(offset_key(consumer, shard))
    pipe.execute()


def publish_offsets(client: redis.Redis, consumer: str, offsets: Mapping[int, str], shards: int) -> None:
    """Set the consumer's safe offsets; a shard without one (a new recovery store) loses its old one."""
    pipe = client.pipeline(transaction=False)  # one key per command: fine on a Redis Cluster too
    for shard in range(shards):
        if shard in offsets:
            pipe.set(offset_key(consumer, shard), offsets[shard])
        else:
            pipe.delete(offset_key(consumer, shard))
    pipe.execute()


def safe_offsets(client: redis.Redis, shards: int) -> dict[int, str]:
    """Per shard, the lowest safe offset over the registered consumers (absent if any has none)."""
    consumers = sorted(member.decode() for member in client.smembers(CONSUMERS_KEY))  # type: ignore[union-attr]
    if not consumers:
        return {}
    pipe = client.pipeline(transaction=False)
    for shard in range(shards):
        for consumer in consumers:
            pipe.get(offset_key(consumer, shard))
    values: list[bytes | None] = pipe.execute()
    safe: dict[int, str] = {}
    for shard in range(shards):
        offsets = values[shard * len(consumers) : (shard + 1) * len(consumers)]
        if all(offset is not None for offset in offsets):
            safe[shard] = min((o.decode() for o in offsets if o is not None), key=parse_id)
    return safe


def trim(client: redis.Redis, shards: int) -> dict[int, int]:
    """Trim every shard below its safe offset; return the entries removed per shard."""
    removed: dict[int, int] = {}
    for shard, minid in safe_offsets(client, shards).items():
        count = int(client.xtrim(stream_name(shard), minid=minid, approximate=False))
        if count:
            client.hincrby(TRIMMED_KEY, str(shard), count)
            removed[shard] = count
    return removed


class Trimmer(BackgroundThread):
    """Publishes this engine's safe offsets and trims the shards, every few seconds, in a thread."""

    thread_name = "stream-trimmer"

    def __init__(
        self,
        redis_url: str,
        recovery_dir: Path,
        consumer: str,
        step_id: str,
        shards: int,
        interval: float = TRIM_EVERY_S,
    ) -> None:
        super().__init__()
        self._redis_url = redis_url
        self._recovery_dir = recovery_dir
        self._consumer = consumer
        self._step_id = step_id
        self._shards = shards
        self._interval = interval

    def run_once(self, client: redis.Redis) -> dict[int, int]:
        """Register, publish the committed offsets (none for a new store), trim."""
        offsets = committed_offsets(self._recovery_dir, self._step_id)
        register(client, self._consumer)
        publish_offsets(client, self._consumer, offsets, self._shards)
        removed = trim(client, self._shards)
        if removed:
            log.info("trimmed %s entries below the safe offsets %s", removed, offsets)
        return removed

    def _run(self) -> None:
        client = sync_redis(self._redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            while True:
                try:
                    self.run_once(client)
                except (redis.RedisError, sqlite3.Error, OSError, ValueError, pickle.UnpicklingError) as exc:
                    log.warning("trimming the event stream failed, trying again later: %s", exc)
                if self._stop.wait(self._interval):
                    return
        finally:
            client.close()
