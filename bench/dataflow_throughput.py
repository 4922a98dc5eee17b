"""Events per second from the stream into ClickHouse, and freshness under a steady load.

Traffic is what the proxy writes: per request one ``decision``, one ``usage`` per
attempt (1 request in 20 falls back after a 429, so it has two), and ``feedback``
for 1 request in 5 (``MIX``): about 2.25 events per request, each built with the
event models in ``symphony.events`` and encoded as the proxy encodes them.

Throughput: before each scenario the stream of a fresh bundled Redis is filled
with about ``--events`` events of that mix, labelled for the scenario (``app`` of
decisions and usage, ``source`` of feedback); a Bytewax flow running in this process
reads them into chDB. The time runs from the flow's start until the last row of each
table is in (the writer counts rows as inserts return), then a query confirms every
table holds exactly the rows sent. In order:

- ``naive``: the baseline of PERFORMANCE.md, in the same run: the same source
  (``XREAD COUNT 2000``), ``orjson`` decode, rows inserted per table through
  clickhouse-connect, no validation, no dead letters, no quotas branch;
- ``ingest``: Symphony's ingest flow (``dataflows.ingest``: batch validation into
  Arrow columns, dead letters, one ``insert_arrow`` per table), 1 and 2 workers;
- ``engine flow``: as ``python -m dataflows.engine`` runs it in production: the
  quotas branch (quota state to Redis, snapshots to ClickHouse) and Bytewax recovery
  on (a fresh recovery store, a snapshot every epoch of ``EPOCH_INTERVAL``), 1 and 2
  workers.

Every flow runs with the engine's garbage-collector tuning (``symphony.gc_tuning.tune_gc``).

Freshness: ``python -m dataflows.engine`` as a subprocess (recovery on, control-plane
tokens set as ``symphony up`` sets them); a producer publishes the same mix at
``--rate`` events/s for ``--seconds``, each stamped with the wall time it is sent;
the usage event of one request in 20 is a probe that a poller looks for through the
engine's query API (as the analyst) every 20 ms. Freshness is the time from a
probe's event time to the first poll that sees it (so it includes up to one poll
interval and the query itself). Afterwards every event sent must be in ClickHouse.

``--smoke``: a few seconds at tiny sizes (2,000 events, 3 s at 300 events/s); any
failure exits non-zero (run by .ci/run).

    .venv/bin/python bench/dataflow_throughput.py                     # 200k events, 15 s at 2000/s
    .venv/bin/python bench/dataflow_throughput.py --events 100000 --seconds 10 --json
    .venv/bin/python bench/dataflow_throughput.py --smoke
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from flowbench import (
    MIX,
    PROBE_EVERY,
    SHARDS,
    TABLES,
    Counter,
    CountingWriter,
    check_rows,
    drop_tables_and_close,
    fill,
    per_table,
    request_events,
    run_until_written,
    say,
    xadd_all,
)
from typing_extensions import override

from dataflows.ingest import build_flow
from dataflows.redis_source import Entry, RedisStreamSource
from sinks.chdb_config import DATABASE
from sinks.clickhouse import ClickHouseSink
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore
from sinks.redis_state import QuotaStateSink
from symphony import clock, engine_client
from symphony.events import Event
from symphony.gc_tuning import GC_THRESHOLDS, tune_gc
from symphony.quotas import load_quota_policy
from symphony.redis_client import sync_redis
from symphony.redis_server import RedisServer
from symphony.settings import ENGINE_PORT_FILE

REPO = Path(__file__).resolve().parents[1]
NAIVE = {table: f"bench_naive_{table}" for table in TABLES.values()}


def requests(label: str) -> Iterator[list[Event]]:
    """The mix, one request a millisecond from an hour ago."""
    base = clock.wall_ms() - 3_600_000
    return (request_events(i, base + i, label) for i in itertools.count())


# --- throughput -----------------------------------------------------------------------------------


class _NaivePartition(StatelessSinkPartition[list[dict[str, Any]]]):
    def __init__(self, client: Any, columns: dict[str, list[str]], counter: Counter) -> None:
        self._client = client
        self._columns = columns
        self._counter = counter

    @override
    def write_batch(self, items: list[list[dict[str, Any]]]) -> None:
        rows: dict[str, list[list[Any]]] = {table: [] for table in NAIVE.values()}
        for batch in items:
            for event in batch:
                table = NAIVE[TABLES[event["type"]]]
                rows[table].append([event[column] for column in self._columns[table]])
        for table, table_rows in rows.items():
            if table_rows:
                self._client.insert(table, table_rows, column_names=self._columns[table])
                self._counter.add(table, len(table_rows))


class NaiveSink(DynamicSink[list[dict[str, Any]]]):
    def __init__(self, client: Any, columns: dict[str, list[str]], counter: Counter) -> None:
        self._client = client
        self._columns = columns
        self._counter = counter

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _NaivePartition:
        return _NaivePartition(self._client, self._columns, self._counter)


def _decode(batch: list[Entry]) -> list[dict[str, Any]]:
    return [orjson.loads(entry.payload or b"{}") for entry in batch]


def naive_columns(store: ClickHouseStore) -> dict[str, list[str]]:
    """Each naive table's columns that the events carry (all of them but those with defaults)."""
    sample = {event.type: event.model_dump() for event in request_events(0, 0, "x")}  # type: ignore[attr-defined]
    columns: dict[str, list[str]] = {}
    for kind, table in TABLES.items():
        described = [row[0] for row in store.query(f"DESCRIBE TABLE {NAIVE[table]}").rows]
        columns[NAIVE[table]] = [name for name in described if name in sample[kind]]
    return columns


def naive_flow(redis_url: str, store: ClickHouseStore, counter: Counter, stop: threading.Event) -> Dataflow:
    import clickhouse_connect

    client = clickhouse_connect.get_client(dsn=store.dsn, database=DATABASE)
    flow = Dataflow("naive")
    batches = op.input("read", flow, RedisStreamSource(redis_url, SHARDS, stop=stop))
    sink = NaiveSink(client, naive_columns(store), counter)
    op.output("insert", op.map("decode", batches, _decode), sink)
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
    recovery: bool
    events: int
    decisions: int
    usage: int
    feedback: int
    seconds: float
    events_per_s: float
    per_worker: float
    vs_naive: float = 1.0


@dataclass(frozen=True)
class Scenario:
    name: str
    workers: int
    build: Callable[[Counter, threading.Event], Dataflow]
    tables: dict[str, str]  # event table -> the table this scenario writes it to
    recovery_dir: Path | None = None


def measure(scenario: Scenario, redis_url: str, events: int, store: ClickHouseStore) -> Throughput:
    label = f"bench-{scenario.name.replace(' ', '-')}-{scenario.workers}"
    say(f"{scenario.name}, {scenario.workers} worker(s): filling the stream with about {events} events")
    sent = fill(redis_url, requests(label), events)
    counter = Counter({scenario.tables[table]: count for table, count in sent.items()})
    run = run_until_written(scenario.build, counter, scenario.workers, scenario.recovery_dir, scenario.name)
    seconds = run.written_s
    try:
        check_rows(store, label, sent, scenario.tables)
    except RuntimeError as exc:
        raise RuntimeError(f"{scenario.name}: {exc}") from exc
    total = sum(sent.values())
    result = Throughput(
        scenario.name,
        scenario.workers,
        scenario.recovery_dir is not None,
        total,
        sent["decisions"],
        sent["usage"],
        sent["feedback"],
        seconds,
        total / seconds,
        total / seconds / scenario.workers,
    )
    say(f"   {total} events in {seconds:.2f}s = {result.events_per_s:,.0f}/s")
    return result


def throughput(redis_url: str, events: int, workdir: Path) -> list[Throughput]:
    store = ClickHouseStore.connect(f"chdb://{workdir / 'chdb'}", log_dir=workdir / "logs")
    try:
        migrate(store)
        for table, naive in NAIVE.items():
            store.command(
                f"CREATE TABLE IF NOT EXISTS {naive} AS {table} ENGINE = MergeTree ORDER BY (ts, event_id)"
            )
        same = {table: table for table in TABLES.values()}

        def build_ingest(quotas: bool) -> Callable[[Counter, threading.Event], Dataflow]:
            return lambda counter, stop: ingest_flow(redis_url, store, counter, stop, quotas)

        scenarios = [
            Scenario("naive", 1, lambda counter, stop: naive_flow(redis_url, store, counter, stop), NAIVE),
            *(Scenario("ingest", workers, build_ingest(False), same) for workers in (1, 2)),
            *(
                Scenario("engine flow", workers, build_ingest(True), same, workdir / f"recovery-{workers}")
                for workers in (1, 2)
            ),
        ]
        results = [measure(scenario, redis_url, events, store) for scenario in scenarios]
    finally:
        drop_tables_and_close(store)
    baseline = results[0].events_per_s
    return [Throughput(**{**asdict(r), "vs_naive": r.events_per_s / baseline}) for r in results]


# --- freshness ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Freshness:
    rate: int
    seconds: float
    events: int
    decisions: int
    usage: int
    feedback: int
    probes: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    poll_ms: int


@contextmanager
def running_engine(redis_url: str, workdir: Path) -> Iterator[str]:
    """``python -m dataflows.engine`` on its own chDB, with control-plane tokens; the analyst's URL."""
    var_dir = workdir / "engine"
    var_dir.mkdir()
    analyst_token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "SIM_URL", "AUTH_DISABLED")}
    env.update(
        REDIS_URL=redis_url,
        CLICKHOUSE_URL=f"chdb://{var_dir / 'chdb'}",
        VAR_DIR=str(var_dir),
        EVENT_SHARDS=str(SHARDS),
        ADMIN_TOKEN=secrets.token_urlsafe(24),
        ANALYST_TOKEN=analyst_token,
        PYTHONPATH=str(REPO),
    )
    log_path = var_dir / "engine.log"
    with log_path.open("ab") as log:
        engine = subprocess.Popen(
            # On a port the OS picks, written to var_dir once it listens: no race for a free port.
            [sys.executable, "-m", "dataflows.engine", "--any-port"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        port_file, url = var_dir / ENGINE_PORT_FILE, ""
        deadline = clock.monotonic() + 60
        while not (url and engine_client.is_ready(url)):
            if engine.poll() is not None or clock.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the engine did not start (exit {engine.poll()}); its log ends:\n{tail}")
            if not url and port_file.exists():
                url = f"http://analyst:{analyst_token}@127.0.0.1:{int(port_file.read_text())}"
            time.sleep(0.1)
        yield url
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(timeout=15)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait()


def count_rows(url: str, label: str) -> dict[str, int]:
    counts = {}
    for table in TABLES.values():
        where = f"source = '{label}'" if table == "feedback" else f"app IN ('{label}', '{label}-probe')"
        counts[table] = int(
            engine_client.query(url, f"SELECT count() FROM {table} FINAL WHERE {where}").scalar()
        )
    return counts


def freshness(redis_url: str, rate: int, seconds: float, workdir: Path, poll_s: float = 0.02) -> Freshness:
    label = "bench-fresh"
    probe_label = f"{label}-probe"
    with running_engine(redis_url, workdir) as url:
        time.sleep(1.0)  # let the dataflow start polling
        sent: dict[str, int] = {}  # probe decision_id -> event time (ms)
        seen: dict[str, int] = {}
        producing = threading.Event()
        producing.set()
        failures: list[BaseException] = []

        def poll() -> None:
            try:
                while producing.is_set() or len(seen) < len(sent):
                    pending = [ts for key, ts in list(sent.items()) if key not in seen]
                    if pending:
                        since = min(pending) - 1
                        rows = engine_client.query(
                            url,
                            f"SELECT decision_id FROM usage WHERE app = '{probe_label}'"
                            f" AND ts >= fromUnixTimestamp64Milli(toInt64({since}))",
                        ).rows
                        now = clock.wall_ms()
                        for (key,) in rows:
                            seen.setdefault(key, now)
                    time.sleep(poll_s)
            except BaseException as exc:
                failures.append(exc)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        client = sync_redis(redis_url)
        tick = 0.02
        say(f"freshness: {rate} events/s for {seconds:g}s ({MIX})")
        totals = dict.fromkeys(TABLES.values(), 0)
        started = clock.monotonic()
        i = events = 0
        while clock.monotonic() - started < seconds and not failures:
            batch: list[Event] = []
            while len(batch) < max(1, rate * tick):
                ts = clock.wall_ms()
                request = request_events(i, ts, label, probe_label)
                if i % PROBE_EVERY == 0:
                    sent[request[0].decision_id] = ts  # type: ignore[attr-defined]  # a Decision
                batch += request
                i += 1
            xadd_all(client, batch)
            for table, count in per_table(batch).items():
                totals[table] += count
            events += len(batch)
            time.sleep(max(0.0, started + events / rate - clock.monotonic()))
        producing.clear()
        poller.join(timeout=60)
        client.close()
        if failures:
            raise RuntimeError(f"the poller failed: {failures[0]!r}")
        if len(seen) < len(sent):
            raise RuntimeError(f"only {len(seen)} of {len(sent)} probes became visible")
        deadline = clock.monotonic() + 60
        while (stored := count_rows(url, label)) != totals:
            if clock.monotonic() > deadline:
                raise RuntimeError(f"ClickHouse holds {stored} of the events sent, {totals}")
            time.sleep(0.5)
        lags = sorted(seen[key] - ts for key, ts in sent.items())
        return Freshness(
            rate=rate,
            seconds=seconds,
            events=events,
            decisions=totals["decisions"],
            usage=totals["usage"],
            feedback=totals["feedback"],
            probes=len(lags),
            p50_ms=statistics.median(lags),
            p99_ms=lags[min(len(lags) - 1, int(0.99 * len(lags)))],
            max_ms=lags[-1],
            poll_ms=round(poll_s * 1000),
        )


# --- report ---------------------------------------------------------------------------------------


def render(rows: list[Throughput], fresh: Freshness | None) -> str:
    header = ("scenario", "workers", "recovery", "events", "seconds", "events/s", "per worker", "vs naive")
    widths = (7, 8, 8, 8, 10, 11, 9)
    lines = [
        f"events: {MIX}",
        f"{header[0]:<14} " + " ".join(f"{h:>{w}}" for h, w in zip(header[1:], widths, strict=True)),
    ]
    for r in rows:
        lines.append(
            f"{r.scenario:<14} {r.workers:>7} {'on' if r.recovery else 'off':>8} {r.events:>8}"
            f" {r.seconds:>8.2f}"
            f" {r.events_per_s:>10,.0f} {r.per_worker:>11,.0f} {r.vs_naive:>8.2f}x"
        )
    if fresh is not None:
        lines += [
            "",
            f"freshness at {fresh.rate} events/s for {fresh.seconds:g}s ({fresh.events} events:"
            f" {fresh.decisions} decisions, {fresh.usage} usage, {fresh.feedback} feedback;"
            f" {fresh.probes} probes, polled every {fresh.poll_ms} ms, engine with recovery):"
            f" p50 {fresh.p50_ms:.0f} ms, p99 {fresh.p99_ms:.0f} ms,"
            f" max {fresh.max_ms:.0f} ms; every event in ClickHouse",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="events pre-filled for throughput")
    parser.add_argument("--rate", type=int, default=2000, help="events/s for freshness")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of the freshness run")
    parser.add_argument("--skip-freshness", action="store_true")
    parser.add_argument(
        "--smoke", action="store_true", help="2,000 events, 3 s at 300/s; exit 1 on any failure"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.rate, args.seconds = 2_000, 300, 3.0
    say(f"load average before: {os.getloadavg()}")
    tune_gc()  # as the engine does; every flow below, the baseline too, runs with it
    say(f"garbage collector thresholds {GC_THRESHOLDS} (the engine's), start-up objects frozen")
    try:
        with tempfile.TemporaryDirectory(prefix="symphony-bench-") as tmp:
            workdir = Path(tmp)
            server = RedisServer(port=0, data_dir=workdir / "redis", persist=False).start()
            try:
                rows = throughput(server.url, args.events, workdir)
                sync_redis(server.url).flushall()
                fresh = (
                    None if args.skip_freshness else freshness(server.url, args.rate, args.seconds, workdir)
                )
            finally:
                server.stop()
    except Exception as exc:
        if not args.smoke:
            raise
        say(f"SMOKE FAILED: {exc!r} ({exc})")
        return 1
    if args.json:
        print(
            json.dumps(
                {"mix": MIX, "throughput": [asdict(r) for r in rows], "freshness": fresh and asdict(fresh)},
                indent=2,
            )
        )
    else:
        print(render(rows, fresh))
    return 0


if __name__ == "__main__":
    sys.exit(main())
