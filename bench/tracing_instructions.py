"""Tracing's cost to the proxy in instructions (callgrind), tracing off and on: figures no load can move.

``bench/tracing_overhead.py`` measures seconds, and on this shared 2-core VM seconds drift by more than
the goal from run to run. This runs each proxy (pinned openai/gpt-4o-mini, in front of the simulator,
the traced one exporting to a receiver that discards) under ``valgrind --tool=callgrind
--separate-threads=yes``, sends warm-up requests, zeroes the counters, sends ``--requests`` more one
after the other, and reads each thread's count back (``callgrind_control``). It prints instructions
per request on the event loop's thread and in all threads, and the share of them the cyclic garbage
collector ran (``gc_collect_main``, inclusive, from the dump): the request path's cost, the
exporter's, and what the spans cost in collections.

Counts vary by about 1 % from run to run; a proxy under callgrind runs some 50 times slower, so a
run takes a few minutes.

    .venv/bin/python bench/tracing_instructions.py               # 300 requests after 60 warm-up
    .venv/bin/python bench/tracing_instructions.py --json
    .venv/bin/python bench/tracing_instructions.py --cache-sim   # and the level-1 caches' misses
    .venv/bin/python bench/tracing_instructions.py --smoke       # 20 after 10: checks the bench runs
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import proxy_overhead as po
from tracing_overhead import DiscardingReceiver

START_TIMEOUT_S = 600.0  # importing the proxy under callgrind takes minutes on a slow day
MODES = {"off": {"TEMPO_ENDPOINT": "", "SPANS_TOKEN": ""}}  # "on" adds the receiver's URL


@dataclass(frozen=True)
class Count:
    mode: str
    requests: int
    loop_thread: float  # instructions per request on the event loop's thread (callgrind's thread 1)
    all_threads: float
    collector: float  # of all threads', in the cyclic collector (gc_collect_main, inclusive)
    # With --cache-sim: the loop's thread's simulated level-1 misses a request, instruction and data.
    loop_i1_misses: float | None = None
    loop_d1_misses: float | None = None


def _control(pid: int, *args: str) -> str:
    return subprocess.run(
        ["callgrind_control", *args, str(pid)], check=True, capture_output=True, text=True
    ).stdout


def thread_counts(pid: int) -> dict[int, int]:
    """Instructions per thread since the last zeroing (``callgrind_control -e``)."""
    found = re.findall(r"^\s*Th (\d+)\s+([\d,]+)", _control(pid, "-e"), flags=re.MULTILINE)
    if not found:
        raise RuntimeError("callgrind_control printed no counters")
    return {int(thread): int(count.replace(",", "")) for thread, count in found}


def collector_instructions(dumps: list[Path]) -> int:
    """``gc_collect_main``'s inclusive instructions over the dumped threads (callgrind_annotate)."""
    total = 0
    for dump in dumps:
        annotated = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for line in annotated.splitlines():
            if re.search(r"\bgc_collect_main\b", line):
                total += int(line.split()[0].replace(",", ""))
                break
    return total


def level1_misses(dump: Path) -> tuple[int, int]:
    """A dump's simulated level-1 misses since the zeroing (its ``summary``): instruction, data."""
    lines = dump.read_text().splitlines()
    events = next(line for line in lines if line.startswith("events:")).split()[1:]
    summary = next(line for line in lines if line.startswith("summary:")).split()[1:]
    totals = dict(zip(events, map(int, summary), strict=True))
    return totals["I1mr"], totals["D1mr"] + totals["D1mw"]


def send(target: po.Target, count: int) -> None:
    body = {"model": target.model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=120.0) as client:
        for _ in range(count):
            client.post(target.url, json=body, headers=target.headers).raise_for_status()


def measure(stack: po.Stack, mode: str, env: dict[str, str], args: argparse.Namespace, out: Path) -> Count:
    service, target = po.pinned_symphony(stack, po.free_port(), f"symphony-{mode}", env)
    return counted(service, target, mode, args, out)


def counted(service: po.Service, target: po.Target, label: str, args: argparse.Namespace, out: Path) -> Count:
    """``service`` under callgrind: ``args.warmup`` requests to ``target``, then its instructions
    per request over ``args.requests`` more, per thread (thread 1 runs the event loop)."""
    prefix = f"{out}/{label}.out"
    service.args = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        *(["--cache-sim=yes"] if args.cache_sim else []),
        f"--callgrind-out-file={prefix}",
        *service.args,
    ]
    with ExitStack() as exits:
        exits.callback(service.stop)
        po.say(f"starting {service.name} under callgrind (minutes)")
        service.start(START_TIMEOUT_S)
        send(target, args.warmup)
        _control(service.pid, "--zero")
        po.say(f"{service.name}: {args.requests} requests")
        send(target, args.requests)
        threads = thread_counts(service.pid)
        _control(service.pid, "--dump")
        dumps = sorted(Path(out).glob(f"{label}.out.*-*"))
    collector = collector_instructions(dumps)
    i1, d1 = level1_misses(Path(f"{prefix}.1-01")) if args.cache_sim else (None, None)  # thread 1: the loop
    return Count(
        mode=label,
        requests=args.requests,
        loop_thread=threads[1] / args.requests,
        all_threads=sum(threads.values()) / args.requests,
        collector=collector / args.requests,
        loop_i1_misses=None if i1 is None else i1 / args.requests,
        loop_d1_misses=None if d1 is None else d1 / args.requests,
    )


def run(args: argparse.Namespace) -> list[Count]:
    var: Path = args.var_dir.resolve()
    with (
        DiscardingReceiver().running() as receiver,
        po.running_stack(var, 60.0) as (stack, _sim),
        ExitStack() as exits,
    ):
        out = Path(args.dumps or exits.enter_context(tempfile.TemporaryDirectory())).resolve()
        out.mkdir(parents=True, exist_ok=True)  # callgrind writes into it and does not make it
        modes = {**MODES, "on": {"TEMPO_ENDPOINT": receiver.url, "SPANS_TOKEN": ""}}
        return [measure(stack, mode, env, args, out) for mode, env in modes.items()]


def table(counts: list[Count]) -> str:
    off = counts[0]
    lines = [f"{'tracing':<9}{'loop thread':>14}{'all threads':>14}{'of it GC':>12}{'loop vs off':>13}"]
    for count in counts:
        share = count.loop_thread / off.loop_thread - 1
        lines.append(
            f"{count.mode:<9}{count.loop_thread:>14,.0f}{count.all_threads:>14,.0f}"
            f"{count.collector:>12,.0f}{share:>+13.1%}"
        )
    lines.append("instructions per request; 'all threads' adds the span exporter's thread and the rest")
    if off.loop_i1_misses is not None:
        lines.append(f"{'tracing':<9}{'loop I1 misses':>16}{'loop D1 misses':>16}")
        lines += [f"{c.mode:<9}{c.loop_i1_misses:>16,.0f}{c.loop_d1_misses:>16,.0f}" for c in counts]
        lines.append("simulated level-1 cache misses a request on the loop's thread (callgrind --cache-sim)")
    return "\n".join(lines)


def parse_args(doc: str, var_dir: Path) -> argparse.Namespace:
    """The options of a callgrind bench: this one's, and ``bench/proxy_instructions.py``'s."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests counted per run (default 300)")
    parser.add_argument("--warmup", type=int, default=60, help="requests before counting (default 60)")
    parser.add_argument("--var-dir", type=Path, default=var_dir)
    parser.add_argument(
        "--dumps", type=Path, help="keep callgrind's dumps here (callgrind_annotate them to see where)"
    )
    parser.add_argument(
        "--cache-sim",
        action="store_true",
        help="simulate the level-1 caches too (slower): their misses a request on the loop's thread",
    )
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.add_argument("--smoke", action="store_true", help="20 requests after 10: checks the bench runs")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.warmup = 20, 10
    return args


def bench_main(
    doc: str,
    var_dir: Path,
    run_counts: Callable[[argparse.Namespace], list[Count]],
    show: Callable[[list[Count]], str],
) -> int:
    args = parse_args(doc, var_dir)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    counts = run_counts(args)
    print(json.dumps([asdict(count) for count in counts], indent=2) if args.json else show(counts))
    return 0


if __name__ == "__main__":
    sys.exit(bench_main(__doc__, Path("var/bench-tracing-instructions"), run, table))
