"""A request's tracing calls, the working tree's against another commit's, same run: µs of CPU, warm and cold.

Each side runs in a child process of its own, alternating, ``--repeats`` times: ``current`` imports the
proxy from this checkout, ``baseline`` from ``--baseline`` (HEAD by default: what the uncommitted changes
do), exported under ``var/bench-tracing-calls/baseline/`` as ``bench-proxy --baseline`` exports it. A child
makes the spans of ``--requests`` proxied requests the way the proxy does (``bench/proxied_request.py``:
``proxy.tracing``'s helpers, as their signatures are since a38b917), each encoded and queued for a sender
that discards, and reports the thread's CPU a request twice:

- warm: the requests one after the other, so their code and data stay in the processor's caches (the figure
  a tight loop gives);
- cold: before each request, 16 MB copied and other code run, so the caches hold none of it. In the running
  proxy a request's other work runs between its tracing calls, and what tracing costs there
  (``bench/tracing_overhead.py``, about 0.15 ms a request) is nearer this figure than the warm one: an
  instruction count (``bench/tracing_instructions.py``) does not see the difference.

It prints the medians over the repeats and the ratio baseline / current.

    .venv/bin/python bench/tracing_calls.py                       # the working tree against HEAD
    .venv/bin/python bench/tracing_calls.py --baseline e8a9896 --repeats 7 --json
    .venv/bin/python bench/tracing_calls.py --smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var" / "bench-tracing-calls"
SIDES = ("current", "baseline")
KINDS = ("warm", "cold")
THRASH_BYTES = 16 * 1024 * 1024


class _Discard:
    def send(self, payload: bytes) -> bool:
        return True

    def shutdown(self) -> None:
        pass


def _child(root: str, requests: int) -> dict[str, object]:
    sys.path.insert(0, root)  # ahead of the editable install's finder: this checkout's proxy
    from proxied_request import trace_request, usage

    from proxy import tracing

    traced = tracing.Tracing({"bench": _Discard()}, schedule_delay_s=0.05)
    tracer = traced.tracer
    usages = [usage(number) for number in range(requests)]
    big = bytearray(THRASH_BYTES)
    other = {f"key{n}": [n, str(n), {"x": n * 1.5}] for n in range(2000)}

    def thrash() -> None:
        bytes(big)  # the data caches
        json.loads(json.dumps(other))  # other code through the instruction caches

    for number in range(min(requests, 1000)):  # the kept pairs filled, as in a proxy that has served a while
        trace_request(tracer, number, usages[number])
    started = time.thread_time_ns()
    for number in range(requests):
        trace_request(tracer, number, usages[number])
    warm_us = (time.thread_time_ns() - started) / requests / 1000
    cold = []
    for number in range(requests):
        thrash()
        started = time.thread_time_ns()
        trace_request(tracer, number, usages[number])
        cold.append(time.thread_time_ns() - started)
    traced.close()
    return {
        "tracing_file": tracing.__file__,
        "us": {
            "warm": warm_us,
            "cold": statistics.median(cold) / 1000,
        },
    }


def _run_child(root: Path, requests: int) -> dict[str, float]:
    """A child's µs a request per kind, once it is sure the child measured ``root``'s proxy."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(root), "--requests", str(requests)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout)
    if not result["tracing_file"].startswith(str(root)):
        raise SystemExit(f"a child for {root} imported {result['tracing_file']}")
    return {kind: float(result["us"][kind]) for kind in KINDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD", help="the commit to compare with (HEAD)")
    parser.add_argument("--requests", type=int, default=3000, help="requests a child makes (3000)")
    parser.add_argument("--repeats", type=int, default=5, help="children a side, alternating (5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--smoke", action="store_true", help="200 requests, one child a side: checks it runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.requests)))
        return
    requests, repeats = (200, 1) if args.smoke else (args.requests, args.repeats)
    # Here, not at the top: a child imports this file too, and proxy_overhead would import the symphony
    # package from this checkout before the child put the one it measures first on sys.path.
    from proxy_overhead import baseline_checkout

    roots = {"current": ROOT, "baseline": baseline_checkout(VAR, args.baseline)[0]}
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for repeat in range(repeats):
        for side in SIDES if repeat % 2 == 0 else SIDES[::-1]:
            print(f"[bench] {side}, repeat {repeat + 1} of {repeats}", file=sys.stderr)
            runs[side].append(_run_child(roots[side], requests))
    report = _report(runs, args.baseline, requests, repeats)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"A request's tracing calls, µs of CPU ({requests} requests, {repeats} repeat(s) a side)")
    print(f"{'':6} {'current':>10} {args.baseline[:10]:>10} {'baseline / current':>19}")
    for kind in KINDS:
        row = report[kind]
        assert isinstance(row, dict)
        print(f"{kind:6} {row['current']:10.1f} {row['baseline']:10.1f} {row['ratio']:19.2f}")


def _report(
    runs: dict[str, list[dict[str, float]]], baseline: str, requests: int, repeats: int
) -> dict[str, object]:
    report: dict[str, object] = {"baseline": baseline, "requests": requests, "repeats": repeats}
    for kind in KINDS:
        medians = {side: statistics.median(run[kind] for run in runs[side]) for side in SIDES}
        report[kind] = {**medians, "ratio": medians["baseline"] / medians["current"]}
    return report


if __name__ == "__main__":
    main()
