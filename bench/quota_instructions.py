"""Redis's own cost of a quota grant, in instructions (callgrind), beside an INCR: figures no load can move.

Seconds on a shared 2-core machine move with its neighbours (steal time reached a third of the CPU
some hours); callgrind counts the instructions the bundled redis-server runs, which only the code
changes. For each row it zeroes the counters, sends the operations from one synchronous client, and
reads the counters back (``callgrind_control``), so start-up and loading the scripts are not counted.

Rows: ``INCR`` (the baseline), then grants on ``openai/gpt-4o``'s 10 windows (caps out of reach) in
batches of 1 (a reservation alone: what every reservation cost before batches) and of larger sizes
(what concurrent reservations of one process cost each, ``symphony.quotas.batches``).

    .venv/bin/python bench/quota_instructions.py              # 320 operations a row
    .venv/bin/python bench/quota_instructions.py --json
    .venv/bin/python bench/quota_instructions.py --smoke      # 32 operations a row
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from symphony.quotas import Amounts, load_quota_policy
from symphony.quotas.store import RESERVE_LUA, layout_of, plan_batch
from symphony.redis_server import REDIS_BINARY, free_port

PROVIDER, MODEL = "openai", "gpt-4o"
UNREACHABLE = 2**50
T0 = 1_767_225_600_000
BATCHES = (1, 4, 16)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _control(pid: int, *args: str) -> str:
    return subprocess.run(
        ["callgrind_control", *args, str(pid)], check=True, capture_output=True, text=True
    ).stdout


def _instructions(pid: int) -> int:
    """Instructions counted since the last zeroing, every thread's (``callgrind_control -e``)."""
    found = re.findall(r"^\s*Th \d+\s+([\d,]+)", _control(pid, "-e"), flags=re.MULTILINE)
    if not found:
        raise RuntimeError("callgrind_control printed no counters")
    return sum(int(count.replace(",", "")) for count in found)


def _measured(pid: int, run: Callable[[], None]) -> int:
    _control(pid, "--zero")
    run()
    return _instructions(pid)


def _start(data_dir: Path) -> tuple[subprocess.Popen[bytes], redis.Redis]:
    port = free_port()
    process = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={data_dir}/callgrind.out",
            str(REDIS_BINARY),
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.ping()
            return process, client
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.2)


def rows(operations: int) -> list[dict[str, float]]:
    policy = load_quota_policy()
    limits = tuple(dataclasses.replace(limit, cap=UNREACHABLE) for limit in policy.limits(PROVIDER, MODEL))
    layout = layout_of(limits)
    with tempfile.TemporaryDirectory() as tmp:
        process, client = _start(Path(tmp))
        try:
            sha = client.script_load(RESERVE_LUA)
            client.incr("warm")

            def incr() -> None:
                for _ in range(operations):
                    client.incr("n")

            def grants(size: int) -> Callable[[], None]:
                def run() -> None:
                    for _ in range(operations // size):
                        plan = plan_batch(layout, T0, [Amounts(1)] * size)
                        replies = client.evalsha(sha, len(plan.keys), *plan.keys, *plan.args)
                        assert replies[1:] == [1] * size

                return run

            grants(1)()  # the hashes exist before anything is counted
            baseline = _measured(process.pid, incr) / operations
            found = [{"row": "INCR", "batch": 1, "instructions": baseline, "vs_incr": 1.0}]
            for size in BATCHES:
                per_grant = _measured(process.pid, grants(size)) / (operations // size * size)
                found.append(
                    {
                        "row": "grant",
                        "batch": size,
                        "instructions": per_grant,
                        "vs_incr": per_grant / baseline,
                    }
                )
                say(f"batch {size}: {per_grant:,.0f} instructions a grant")
            return found
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=320, help="operations a row (default 320)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--smoke", action="store_true", help="32 operations a row: checks the bench runs")
    options = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    found = rows(32 if options.smoke else options.operations)
    if options.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"{'row':<8}{'batch':>6}{'instructions':>14}{'x INCR':>9}")
    for row in found:
        print(f"{row['row']:<8}{row['batch']:>6}{row['instructions']:>14,.0f}{row['vs_incr']:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
