"""Events per second of the engine as 1 process and as a Bytewax cluster of 2, on this machine with chDB.

Each run has a fresh bundled Redis whose stream is filled beforehand with about ``--events`` events of
the proxy's mix (``flowbench.request_events``: decision, usage per attempt, feedback 1 in 5), then
starts ``python -m dataflows.engine`` as process 0 (and, for 2, process 1 with ``-i 1 -a ...``), each
with 1 worker. The time runs from the moment process 0's query API answers (migrations done) until
ClickHouse holds every row sent (polled every 0.1 s under ``FINAL``). Also printed, per process: the CPU
seconds it used meanwhile (utime + stime from /proc), and for 2 processes the share of rows process 0
wrote itself (``symphony_sink_rows_written_total``).

With embedded chDB (one process per directory) process 1 cannot open ClickHouse: it posts its batches
to process 0's ``POST /insert`` (``sinks.engine_writer``), so process 0 decodes them again and inserts
them under the same writer as its own. That is the cost this prints: process 0's CPU per 1,000 rows
with and without a follower. With an ``http(s)://`` ClickHouse server every process connects and
inserts its own batches (``dataflows.engine``: ``cluster.leader or not embedded``); no server can be
installed on this machine, so that path is not measured here.

    .venv/bin/python bench/engine_processes.py                 # 100k events, 1 and 2 processes
    .venv/bin/python bench/engine_processes.py --events 40000 --json
    .venv/bin/python bench/engine_processes.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from dataflow_throughput import requests
from flowbench import SHARDS, TABLES, fill, say

from symphony import engine_client
from symphony.redis_server import RedisServer, free_ports

REPO = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = secrets.token_urlsafe(24)

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    processes: int
    events: int
    seconds: float
    events_per_s: float
    cpu_s: list[float]  # per process, while it ingested
    leader_rows_share: float  # rows process 0 wrote of its own, of all rows


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rows_sql(label: str) -> str:
    parts = [
        f"(SELECT count() FROM {table} FINAL WHERE "
        + (f"source = '{label}')" if table == "feedback" else f"app = '{label}')")
        for table in TABLES.values()
    ]
    return "SELECT " + " + ".join(parts)


def measure(processes: int, events: int, workdir: Path) -> Run:
    label = f"bench-p{processes}"
    redis = RedisServer(port=0, data_dir=workdir / f"redis-{processes}", persist=False).start()
    engines: list[subprocess.Popen[bytes]] = []
    try:
        sent = sum(fill(redis.url, requests(label), events).values())
        var_dir = workdir / f"engine-{processes}"
        var_dir.mkdir()
        port, *cluster_ports = free_ports(1 + processes)
        addresses = ";".join(f"127.0.0.1:{cluster_port}" for cluster_port in cluster_ports)
        for index in range(processes):
            cluster = ["-i", str(index), "-a", addresses] if processes > 1 else []
            engines.append(start_engine(redis.url, var_dir, port, index, cluster))
        url = f"http://admin:{ADMIN_TOKEN}@127.0.0.1:{port}"
        engine_client.wait_until_ready(url, timeout=120)
        started = time.monotonic()
        cpu_before = [cpu_seconds(engine.pid) for engine in engines]
        engine_client.wait_for_count(url, rows_sql(label), sent, timeout=600, interval=0.1)
        seconds = time.monotonic() - started
        cpu = [cpu_seconds(engine.pid) - before for engine, before in zip(engines, cpu_before, strict=True)]
        own = sum(
            value for name, value in metrics(url) if name.startswith("symphony_sink_rows_written_total")
        )
        return Run(processes, sent, seconds, sent / seconds, cpu, own / sent)
    finally:
        for engine in engines:
            engine.send_signal(signal.SIGKILL)
            engine.wait()
        redis.stop()


def start_engine(
    redis_url: str, var_dir: Path, port: int, index: int, cluster: list[str]
) -> subprocess.Popen[bytes]:
    """``python -m dataflows.engine``, process ``index`` of the cluster; process 0 serves on ``port``."""
    env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "SIM_URL", "AUTH_DISABLED")}
    env.update(
        REDIS_URL=redis_url,
        CLICKHOUSE_URL=f"chdb://{var_dir / 'chdb'}",
        VAR_DIR=str(var_dir),
        EVENT_SHARDS=str(SHARDS),
        ENGINE_PORT=str(port),
        ADMIN_TOKEN=ADMIN_TOKEN,
        ANALYST_TOKEN=secrets.token_urlsafe(24),
        PYTHONPATH=str(REPO),
    )
    with (var_dir / f"engine{index}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "dataflows.engine", *cluster], cwd=REPO, env=env, stdout=log, stderr=log
        )


def metrics(url: str) -> list[tuple[str, float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).raise_for_status().text
    samples = [line.rpartition(" ") for line in text.splitlines() if line and not line.startswith("#")]
    return [(name, float(value)) for name, _, value in samples]


def render(runs: list[Run]) -> str:
    lines = [
        "| processes | events | seconds | events/s | CPU s per process | process 0 CPU ms / 1k events"
        " | rows process 0 wrote itself |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        cpu = ", ".join(f"{c:.1f}" for c in run.cpu_s)
        lines.append(
            f"| {run.processes} | {run.events} | {run.seconds:.1f} | {run.events_per_s:,.0f} | {cpu} "
            f"| {run.cpu_s[0] / run.events * 1e6:.0f} | {run.leader_rows_share:.0%} |"
        )
    if len(runs) == 2:
        lines.append(f"\n2 processes / 1 process: {runs[1].events_per_s / runs[0].events_per_s:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events pre-filled per run")
    parser.add_argument("--smoke", action="store_true", help="2,000 events: checks it runs (CI)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    events = 2_000 if args.smoke else args.events
    if events < 100:
        parser.error("--events must be at least 100")
    with tempfile.TemporaryDirectory(prefix="engine-processes-") as tmp:
        runs = []
        for processes in (1, 2):
            say(f"{processes} process(es): {events} events")
            runs.append(measure(processes, events, Path(tmp)))
    if args.json:
        print(json.dumps([asdict(run) for run in runs], indent=2))
    else:
        print(render(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
