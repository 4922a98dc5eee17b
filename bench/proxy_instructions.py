"""The proxy's instructions per request (callgrind) beside the floor's, same run: a figure no load can move.

``bench/proxy_overhead.py`` measures seconds, which drift on this shared VM by more than most
changes move them. This runs the floor (``proxy_overhead``'s bare Starlette + aiohttp relay) and
Symphony's proxy (pinned openai/gpt-4o-mini, app-key auth, quota reserve and settle, events;
tracing off: ``bench/tracing_instructions.py`` counts its cost) in front of the same simulator,
each under ``valgrind --tool=callgrind --separate-threads=yes``; it sends warm-up requests, zeroes
the counters, sends ``--requests`` more one after the other and prints each one's instructions per
request on the event loop's thread and in all threads, and Symphony's as a multiple of the floor's.
The kernel's work (the sockets) and Redis's are not counted: this is the processes' own code.

Counts vary by about 1 % from run to run; a process under callgrind runs some 50 times slower, so
a run takes a few minutes.

    .venv/bin/python bench/proxy_instructions.py               # 300 requests after 60 warm-up
    .venv/bin/python bench/proxy_instructions.py --json
    .venv/bin/python bench/proxy_instructions.py --smoke       # 20 after 10: checks the bench runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import proxy_overhead as po
from tracing_instructions import Count, bench_main, counted

TRACING_OFF = {"TEMPO_ENDPOINT": "", "SPANS_TOKEN": ""}


def run(args: argparse.Namespace) -> list[Count]:
    var: Path = args.var_dir.resolve()
    with po.running_stack(var, 60.0) as (stack, _sim), ExitStack() as exits:
        out = Path(args.dumps or exits.enter_context(tempfile.TemporaryDirectory()))
        floor, [floor_target] = po.floor_service(stack, po.free_port())
        symphony, target = po.pinned_symphony(stack, po.free_port(), "symphony", TRACING_OFF)
        return [
            counted(floor, floor_target, "floor", args, out),
            counted(symphony, target, "symphony", args, out),
        ]


def table(counts: list[Count]) -> str:
    floor = counts[0]
    lines = [f"{'target':<10}{'loop thread':>14}{'all threads':>14}{'x floor (loop)':>16}"]
    for count in counts:
        lines.append(
            f"{count.mode:<10}{count.loop_thread:>14,.0f}{count.all_threads:>14,.0f}"
            f"{count.loop_thread / floor.loop_thread:>16.2f}"
        )
    lines.append(
        f"instructions per request, {floor.requests} sequential requests; Redis and the kernel not counted"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(bench_main(__doc__, Path("var/bench-proxy-instructions"), run, table))
