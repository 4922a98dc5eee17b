"""Events per second from the stream into ClickHouse, and freshness under a steady load.

Throughput: a stream of ``--events`` usage events, pre-filled over the shards of a
fresh bundled Redis, is read into chDB by a Bytewax flow running in this process;
the time runs from the flow's start until the last row is in ClickHouse (the
writer counts rows as inserts return, then a query confirms the table). In order:

- ``naive``: the baseline of PERFORMANCE.md, measured in the same run: the same
  source (``XREAD COUNT 2000``), ``orjson`` decode, rows inserted through
  clickhouse-connect, no validation, no dead letters, no quotas branch;
- ``ingest``: Symphony's ingest flow (``dataflows.ingest``: batch validation into
  Arrow columns, dead letters, one ``insert_arrow`` per table), 1 and 2 workers;
- ``engine flow``: the same plus the quotas branch, as ``python -m dataflows.engine``
  runs it (quota state to Redis, snapshots to ClickHouse), 1 and 2 workers.

Every flow runs with the engine's garbage-collector tuning (``symphony.gc_tuning.tune_gc``).

Freshness: ``python -m dataflows.engine`` as a subprocess; a producer publishes
decision and usage events at ``--rate`` events/s for ``--seconds``, each stamped
with the wall time it is sent; one usage event in 20 is a probe that a poller looks
for through the engine's query API every 20 ms. Freshness is the time from a
probe's event time to the first poll that sees it (so it includes up to one poll
interval and the query itself).

    .venv/bin/python bench/dataflow_throughput.py                     # 200k events, 15 s at 2000/s
    .venv/bin/python bench/dataflow_throughput.py --events 100000 --seconds 10 --json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import pyarrow as pa
import redis
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main
from typing_extensions import override

from dataflows.ingest import build_flow
from dataflows.redis_source import Entry, RedisStreamSource
from sinks.chdb_config import DATABASE
from sinks.clickhouse import ClickHouseSink
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore
from sinks.redis_state import QuotaStateSink
from symphony import clock, engine_client
from symphony.events import new_id
from symphony.gc_tuning import GC_THRESHOLDS, tune_gc
from symphony.quotas import load_quota_policy
from symphony.redis_server import RedisServer, free_port
from symphony.stream import EVENT_FIELD, shard_of, stream_name

REPO = Path(__file__).resolve().parents[1]
SHARDS = 4
EPOCH = timedelta(seconds=1)
NAIVE_TABLE = "bench_naive_usage"
USAGE_COLUMNS = [
    "event_id",
    "ts",
    "schema_version",
    "decision_id",
    "app",
    "provider",
    "model",
    "attempt",
    "status",
    "ttfb_ms",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "rate_limit",
    "fallback_from",
]
PROVIDERS = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet"), ("google", "gemini-2.5-pro")]


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def usage_event(i: int, ts: int, app: str = "bench") -> dict[str, Any]:
    provider, model = PROVIDERS[i % len(PROVIDERS)]
    return {
        "type": "usage",
        "event_id": new_id(ts),
        "ts": ts,
        "schema_version": 1,
        "decision_id": new_id(ts),
        "app": app,
        "provider": provider,
        "model": model,
        "attempt": 1,
        "status": "ok",
        "ttfb_ms": 20.0 + i % 7,
        "latency_ms": 100.0 + i % 100,
        "input_tokens": i % 1000,
        "output_tokens": 10,
        "cost_usd": 0.0001,
        "rate_limit": {"x-ratelimit-remaining-requests": "99"},
        "fallback_from": "",
    }


def decision_event(usage: dict[str, Any]) -> dict[str, Any]:
    arm = f"{usage['provider']}/{usage['model']}"
    return {
        "type": "decision",
        "event_id": new_id(usage["ts"]),
        "ts": usage["ts"],
        "schema_version": 1,
        "decision_id": usage["decision_id"],
        "request_id": usage["decision_id"],
        "app": usage["app"],
        "task": "chat",
        "features": {"prompt_tokens": 120.0},
        "candidates": [arm],
        "probabilities": [1.0],
        "provider": usage["provider"],
        "model": usage["model"],
        "policy": "champion",
        "policy_version": "v1",
        "propensity": 1.0,
        "served_by": arm,
    }


def xadd_all(client: redis.Redis, events: list[dict[str, Any]]) -> None:
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(stream_name(shard_of(event["decision_id"], SHARDS)), {EVENT_FIELD: orjson.dumps(event)})
    pipe.execute()


# --- throughput -----------------------------------------------------------------------------------


class Counter:
    """Counts rows of one table as inserts return; ``done`` is set, with its time, at ``target``."""

    def __init__(self, table: str, target: int) -> None:
        self.table = table
        self.target = target
        self.rows = 0
        self.done_at: float | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()

    def add(self, table: str, rows: int) -> None:
        if table != self.table:
            return
        with self.lock:
            self.rows += rows
            if self.rows >= self.target and self.done_at is None:
                self.done_at = clock.monotonic()
                self.done.set()


class CountingWriter:
    def __init__(self, store: ClickHouseStore, counter: Counter) -> None:
        self._store = store
        self._counter = counter

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self._store.insert_arrow(table, data)
        self._counter.add(table, data.num_rows)


class _NaivePartition(StatelessSinkPartition[list[dict[str, Any]]]):
    def __init__(self, client: Any, counter: Counter) -> None:
        self._client = client
        self._counter = counter

    @override
    def write_batch(self, items: list[list[dict[str, Any]]]) -> None:
        rows = [[event[column] for column in USAGE_COLUMNS] for batch in items for event in batch]
        self._client.insert(NAIVE_TABLE, rows, column_names=USAGE_COLUMNS)
        self._counter.add(NAIVE_TABLE, len(rows))


class NaiveSink(DynamicSink[list[dict[str, Any]]]):
    def __init__(self, client: Any, counter: Counter) -> None:
        self._client = client
        self._counter = counter

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _NaivePartition:
        return _NaivePartition(self._client, self._counter)


def _decode(batch: list[Entry]) -> list[dict[str, Any]]:
    return [orjson.loads(entry.payload or b"{}") for entry in batch]


def naive_flow(redis_url: str, store: ClickHouseStore, counter: Counter, stop: threading.Event) -> Dataflow:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=store.dsn, database=DATABASE)
    flow = Dataflow("naive")
    batches = op.input("read", flow, RedisStreamSource(redis_url, SHARDS, stop=stop))
    op.output("insert", op.map("decode", batches, _decode), NaiveSink(client, counter))
    return flow


def ingest_flow(
    redis_url: str, store: ClickHouseStore, counter: Counter, stop: threading.Event, quotas: bool
) -> Dataflow:
    source = RedisStreamSource(redis_url, SHARDS, stop=stop)
    sink = ClickHouseSink(CountingWriter(store, counter), stop=stop)
    return build_flow(source, sink, (load_quota_policy(), QuotaStateSink(redis_url)) if quotas else None)


@dataclass(frozen=True)
class Throughput:
    scenario: str
    workers: int
    events: int
    seconds: float
    events_per_s: float
    per_worker: float
    vs_naive: float = 1.0


def measure(
    name: str,
    workers: int,
    events: int,
    table: str,
    store: ClickHouseStore,
    build: Callable[[Counter, threading.Event], Dataflow],
) -> Throughput:
    store.command(f"TRUNCATE TABLE IF EXISTS {table}")
    counter = Counter(table, events)
    stop = threading.Event()
    flow = build(counter, stop)

    def stop_when_done() -> None:
        counter.done.wait()
        stop.set()

    threading.Thread(target=stop_when_done, daemon=True).start()
    started = clock.monotonic()
    cli_main(flow, workers_per_process=workers, epoch_interval=EPOCH)  # type: ignore[no-untyped-call]
    if counter.done_at is None:
        raise RuntimeError(f"{name}: only {counter.rows} of {events} rows written")
    seconds = counter.done_at - started
    visible = int(store.query(f"SELECT count() FROM {table}").rows[0][0])
    if visible != events:
        raise RuntimeError(f"{name}: {visible} rows visible, expected {events}")
    result = Throughput(name, workers, events, seconds, events / seconds, events / seconds / workers)
    say(f"{name}, {workers} worker(s): {events} events in {seconds:.2f}s = {result.events_per_s:,.0f}/s")
    return result


def throughput(redis_url: str, events: int, workdir: Path) -> list[Throughput]:
    client = redis.Redis.from_url(redis_url)
    say(f"filling the stream with {events} usage events over {SHARDS} shards")
    base = clock.wall_ms() - 3_600_000
    for start in range(0, events, 10_000):
        xadd_all(client, [usage_event(i, base + i) for i in range(start, min(events, start + 10_000))])
    client.close()
    store = ClickHouseStore.connect(f"chdb://{workdir / 'chdb'}")
    try:
        migrate(store)
        store.command(
            f"CREATE TABLE IF NOT EXISTS {NAIVE_TABLE} AS usage ENGINE = MergeTree ORDER BY (ts, event_id)"
        )
        results = [
            measure(
                "naive",
                1,
                events,
                NAIVE_TABLE,
                store,
                lambda counter, stop: naive_flow(redis_url, store, counter, stop),
            )
        ]
        for quotas, name in ((False, "ingest"), (True, "engine flow")):

            def build(counter: Counter, stop: threading.Event, quotas: bool = quotas) -> Dataflow:
                return ingest_flow(redis_url, store, counter, stop, quotas)

            for workers in (1, 2):
                results.append(measure(name, workers, events, "usage", store, build))
    finally:
        store.close()
    baseline = results[0].events_per_s
    return [Throughput(**{**asdict(r), "vs_naive": r.events_per_s / baseline}) for r in results]


# --- freshness ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Freshness:
    rate: int
    seconds: float
    events: int
    probes: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    poll_ms: int


def freshness(redis_url: str, rate: int, seconds: float, workdir: Path, poll_s: float = 0.02) -> Freshness:
    port = free_port()
    var_dir = workdir / "engine"
    var_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "SIM_URL")}
    env.update(
        REDIS_URL=redis_url,
        CLICKHOUSE_URL=f"chdb://{var_dir / 'chdb'}",
        VAR_DIR=str(var_dir),
        ENGINE_PORT=str(port),
        EVENT_SHARDS=str(SHARDS),
        PYTHONPATH=str(REPO),
    )
    url = f"http://127.0.0.1:{port}"
    with (var_dir / "engine.log").open("ab") as log:
        engine = subprocess.Popen(
            [sys.executable, "-m", "dataflows.engine"], cwd=REPO, env=env, stdout=log, stderr=log
        )
    try:
        engine_client.wait_until_ready(url, timeout=60)
        time.sleep(1.0)  # let the dataflow start polling
        sent: dict[str, int] = {}  # probe decision_id -> event time (ms)
        seen: dict[str, int] = {}
        producing = threading.Event()
        producing.set()

        def poll() -> None:
            while producing.is_set() or len(seen) < len(sent):
                pending = [ts for key, ts in list(sent.items()) if key not in seen]
                if pending:
                    since = min(pending) - 1
                    rows = engine_client.query(
                        url,
                        "SELECT decision_id FROM usage WHERE app = 'bench-probe'"
                        f" AND ts >= fromUnixTimestamp64Milli(toInt64({since}))",
                    ).rows
                    now = clock.wall_ms()
                    for (key,) in rows:
                        seen.setdefault(key, now)
                time.sleep(poll_s)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        client = redis.Redis.from_url(redis_url)
        tick = 0.02
        per_tick = max(2, round(rate * tick / 2)) * 2  # decision + usage pairs
        say(f"freshness: {rate} events/s for {seconds:g}s ({per_tick} events every {tick * 1000:.0f} ms)")
        started = clock.monotonic()
        i = 0
        while clock.monotonic() - started < seconds:
            batch: list[dict[str, Any]] = []
            for _ in range(per_tick // 2):
                ts = clock.wall_ms()
                probe = i % 20 == 0
                usage = usage_event(i, ts, app="bench-probe" if probe else "bench")
                if probe:
                    sent[usage["decision_id"]] = ts
                batch += [decision_event(usage), usage]
                i += 1
            xadd_all(client, batch)
            next_tick = started + (i * 2 / rate)
            time.sleep(max(0.0, next_tick - clock.monotonic()))
        producing.clear()
        poller.join(timeout=60)
        client.close()
        if len(seen) < len(sent):
            raise RuntimeError(f"only {len(seen)} of {len(sent)} probes became visible")
        lags = sorted(seen[key] - ts for key, ts in sent.items())
        return Freshness(
            rate=rate,
            seconds=seconds,
            events=2 * i,
            probes=len(lags),
            p50_ms=statistics.median(lags),
            p99_ms=lags[min(len(lags) - 1, int(0.99 * len(lags)))],
            max_ms=lags[-1],
            poll_ms=round(poll_s * 1000),
        )
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(timeout=15)
        except subprocess.TimeoutExpired:
            engine.kill()


# --- report ---------------------------------------------------------------------------------------


def render(rows: list[Throughput], fresh: Freshness | None) -> str:
    header = ("scenario", "workers", "events", "seconds", "events/s", "per worker", "vs naive")
    lines = [
        f"{header[0]:<14} "
        + " ".join(f"{h:>{w}}" for h, w in zip(header[1:], (7, 8, 8, 10, 11, 9), strict=True))
    ]
    for r in rows:
        lines.append(
            f"{r.scenario:<14} {r.workers:>7} {r.events:>8} {r.seconds:>8.2f} {r.events_per_s:>10,.0f}"
            f" {r.per_worker:>11,.0f} {r.vs_naive:>8.2f}x"
        )
    if fresh is not None:
        lines += [
            "",
            f"freshness at {fresh.rate} events/s for {fresh.seconds:g}s ({fresh.events} events,"
            f" {fresh.probes} probes, polled every {fresh.poll_ms} ms):"
            f" p50 {fresh.p50_ms:.0f} ms, p99 {fresh.p99_ms:.0f} ms,"
            f" max {fresh.max_ms:.0f} ms",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="events pre-filled for throughput")
    parser.add_argument("--rate", type=int, default=2000, help="events/s for freshness")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of the freshness run")
    parser.add_argument("--skip-freshness", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    say(f"load average before: {os.getloadavg()}")
    tune_gc()  # as the engine does; every flow below, the baseline too, runs with it
    say(f"garbage collector thresholds {GC_THRESHOLDS} (the engine's), start-up objects frozen")
    with tempfile.TemporaryDirectory(prefix="symphony-bench-") as tmp:
        workdir = Path(tmp)
        server = RedisServer(port=free_port(), data_dir=workdir / "redis", persist=False).start()
        try:
            rows = throughput(server.url, args.events, workdir)
            redis.Redis.from_url(server.url).flushall()
            fresh = None if args.skip_freshness else freshness(server.url, args.rate, args.seconds, workdir)
        finally:
            server.stop()
    if args.json:
        print(
            json.dumps(
                {"throughput": [asdict(r) for r in rows], "freshness": fresh and asdict(fresh)}, indent=2
            )
        )
    else:
        print(render(rows, fresh))
    return 0


if __name__ == "__main__":
    sys.exit(main())
