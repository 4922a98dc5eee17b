"""What the dataflow benchmarks share: the proxy's traffic, filling the stream, running a flow to the end.

Used by ``bench/dataflow_throughput.py`` and ``bench/learner_throughput.py`` (a script
imports it as ``flowbench``: its own directory is first on ``sys.path``).

Traffic is what the proxy writes: per request one ``decision``, one ``usage`` per
attempt (1 request in ``FALLBACK_EVERY`` falls back after a 429, so it has two), and
``feedback`` for 1 request in ``FEEDBACK_EVERY`` (``MIX``), each built with the event
models in ``symphony.events`` and encoded as the proxy encodes them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import redis
from bytewax.dataflow import Dataflow
from bytewax.run import cli_main

from dataflows.engine import EPOCH_INTERVAL, prepare_recovery
from sinks.chdb_config import DATABASE
from sinks.clickhouse_store import ClickHouseStore
from symphony import clock
from symphony.events import Decision, Event, Feedback, Usage, new_id
from symphony.redis_client import sync_redis
from symphony.stream import EVENT_FIELD, encode, shard_of, stream_name

SHARDS = 4
TABLES = {"decision": "decisions", "usage": "usage", "feedback": "feedback"}
# Per request: one decision; a fallback (a 429, then a second attempt) in 1 of FALLBACK_EVERY;
# feedback for 1 of FEEDBACK_EVERY; the usage event of 1 of PROBE_EVERY is a freshness probe.
FALLBACK_EVERY = 20
FEEDBACK_EVERY = 5
PROBE_EVERY = 20
MIX = f"decision + usage (2 usage 1 in {FALLBACK_EVERY}) + feedback 1 in {FEEDBACK_EVERY}"
ARMS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku-latest"), ("gemini", "gemini-2.5-flash")]


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def request_events(
    i: int, ts: int, label: str, probe_label: str | None = None, task: str = "chat"
) -> list[Event]:
    """The events of request ``i`` at ``ts``: decision, usage per attempt, sometimes feedback."""
    provider, model = ARMS[i % len(ARMS)]
    arm = f"{provider}/{model}"
    decision_id = new_id(ts)
    candidates = [f"{p}/{m}" for p, m in ARMS]
    events: list[Event] = [
        Decision(
            event_id=new_id(ts),
            ts=ts,
            decision_id=decision_id,
            request_id=new_id(ts),
            app=label,
            task=task,
            features={"prompt_tokens": float(100 + i % 400), "has_tools": 0.0},
            candidates=candidates,
            probabilities=[0.6, 0.25, 0.15],
            provider=provider,
            model=model,
            policy="champion",
            policy_version="v1",
            propensity=0.6,
            quota_remaining={f"{arm}:minute:requests": 0.9},
            served_by=arm,
        )
    ]
    usage_app = probe_label if probe_label is not None and i % PROBE_EVERY == 0 else label
    attempts = [("429", provider, model, "")] if i % FALLBACK_EVERY == 1 else []
    if attempts:
        provider, model = ARMS[(i + 1) % len(ARMS)]
        attempts.append(("ok", provider, model, arm))
    else:
        attempts = [("ok", provider, model, "")]
    for attempt, (status, attempt_provider, attempt_model, fallback_from) in enumerate(attempts, 1):
        events.append(
            Usage(
                event_id=new_id(ts),
                ts=ts,
                decision_id=decision_id,
                app=usage_app,
                provider=attempt_provider,
                model=attempt_model,
                attempt=attempt,
                status=status,  # type: ignore[arg-type]  # one of AttemptStatus
                ttfb_ms=20.0 + i % 7,
                latency_ms=100.0 + i % 100,
                input_tokens=i % 1000,
                output_tokens=10 if status == "ok" else 0,
                cost_usd=0.0001 if status == "ok" else 0.0,
                rate_limit={"x-ratelimit-remaining-requests": "99"},
                fallback_from=fallback_from,
            )
        )
    if i % FEEDBACK_EVERY == 0:
        events.append(
            Feedback(event_id=new_id(ts), ts=ts, decision_id=decision_id, score=(i % 11) / 10, source=label)
        )
    return events


def shard(event: Event) -> int:
    """The stream shard the proxy writes ``event`` to: its decision's."""
    return shard_of(str(getattr(event, "decision_id", event.event_id)), SHARDS)


def xadd_all(client: redis.Redis, events: list[Event]) -> None:
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(stream_name(shard(event)), {EVENT_FIELD: encode(event)})
    pipe.execute()


def per_table(events: Sequence[Event]) -> dict[str, int]:
    counts = dict.fromkeys(TABLES.values(), 0)
    for event in events:
        counts[TABLES[event.type]] += 1  # type: ignore[attr-defined]  # every event model has a type
    return counts


def fill(redis_url: str, requests: Iterable[list[Event]], events: int) -> dict[str, int]:
    """Empty Redis, then add the events of ``requests`` in order until about ``events``; rows per table."""
    client = sync_redis(redis_url)
    client.flushall()
    totals = dict.fromkeys(TABLES.values(), 0)
    sent = 0
    pending = iter(requests)
    try:
        while sent < events:
            batch: list[Event] = []
            while len(batch) < 10_000 and sent + len(batch) < events:
                request = next(pending, None)
                if request is None:
                    break
                batch += request
            if not batch:
                break
            xadd_all(client, batch)
            for table, count in per_table(batch).items():
                totals[table] += count
            sent += len(batch)
    finally:
        client.close()
    return totals


class Counter:
    """Counts rows per table as inserts return; ``done`` is set, with its time, once every target is met."""

    def __init__(self, targets: dict[str, int]) -> None:
        self.targets = targets
        self.rows = dict.fromkeys(targets, 0)
        self.done_at: float | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()

    def add(self, table: str, rows: int) -> None:
        if table not in self.rows:
            return
        with self.lock:
            self.rows[table] += rows
            met = all(self.rows[name] >= target for name, target in self.targets.items())
            if met and self.done_at is None:
                self.done_at = clock.monotonic()
                self.done.set()


class CountingWriter:
    """A ``sinks.clickhouse.Writer`` that counts the rows of each insert once it returns."""

    def __init__(self, store: ClickHouseStore, counter: Counter) -> None:
        self._store = store
        self._counter = counter

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self._store.insert_arrow(table, data)
        self._counter.add(table, data.num_rows)


@dataclass(frozen=True)
class FlowRun:
    written_s: float  # from the flow's start until the last row of every table was inserted
    drained_s: float  # until the flow returned: every branch done with every event, last epoch closed


def run_until_written(
    build: Callable[[Counter, threading.Event], Dataflow],
    counter: Counter,
    workers: int = 1,
    recovery_dir: Path | None = None,
    name: str = "flow",
) -> FlowRun:
    """Run the flow in this process until ``counter`` has every row, then stop its source and let it drain."""
    stop = threading.Event()
    flow = build(counter, stop)
    recovery = prepare_recovery(recovery_dir) if recovery_dir is not None else None

    def stop_when_done() -> None:
        counter.done.wait()
        stop.set()

    threading.Thread(target=stop_when_done, daemon=True).start()
    started = clock.monotonic()
    cli_main(  # type: ignore[no-untyped-call]
        flow, workers_per_process=workers, epoch_interval=EPOCH_INTERVAL, recovery_config=recovery
    )
    drained = clock.monotonic()
    if counter.done_at is None:
        raise RuntimeError(f"{name}: only {counter.rows} of {counter.targets} rows written")
    return FlowRun(counter.done_at - started, drained - started)


def drop_tables_and_close(store: ClickHouseStore) -> None:
    """Drop every table of the embedded engine (``SYNC``), then close ``store``.

    chDB's server lives as long as this process, not its connections: after ``close`` it goes
    on merging the parts the bench wrote, and a merge that writes a part while the bench
    removes its temporary directory fails the removal ("Directory not empty"). A dropped
    table has no merges left.
    """
    try:
        for (table,) in store.query(f"SHOW TABLES FROM {DATABASE}").rows:
            store.command(f"DROP TABLE {DATABASE}.{table} SYNC")
    finally:
        store.close()


def check_rows(store: ClickHouseStore, label: str, sent: dict[str, int], tables: dict[str, str]) -> None:
    """Every table holds exactly the rows of ``label`` that were sent (``tables``: event table -> target)."""
    for table, expected in sent.items():
        where = "source" if table == "feedback" else "app"
        target = tables[table]
        visible = int(store.query(f"SELECT count() FROM {target} WHERE {where} = '{label}'").rows[0][0])
        if visible != expected:
            raise RuntimeError(f"{visible} rows of {label} in {target}, expected {expected}")
