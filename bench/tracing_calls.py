"""A request's tracing calls, the working tree's against another commit's, same run: µs of CPU, warm and cold.

Each side runs in a child process of its own, alternating, ``--repeats`` times: ``current`` imports the
proxy from this checkout, ``baseline`` from a temporary ``git worktree`` of ``--baseline`` (HEAD by default:
what the uncommitted changes do). A child makes the spans of ``--requests`` proxied requests the way the
proxy does (``proxy.tracing``'s helpers, as their signatures are since a38b917: the server span, the route,
the quota reservation, one attempt with its upstream headers, the decision on the server span), each encoded
and queued for a sender that discards, and reports the thread's CPU a request twice:

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
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("current", "baseline")
THRASH_BYTES = 16 * 1024 * 1024


class _Discard:
    def send(self, payload: bytes) -> bool:
        return True

    def shutdown(self) -> None:
        pass


def _child(root: str, requests: int) -> dict[str, object]:
    sys.path.insert(0, root)  # ahead of the editable install's finder: this checkout's proxy
    from proxy import tracing
    from symphony.events import Usage

    traced = tracing.Tracing({"bench": _Discard()}, schedule_delay_s=0.05)
    tracer = traced.tracer
    scope = {
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"authorization", b"Bearer sk-symphony-bench"),
            (b"content-type", b"application/json"),
            (b"content-length", b"120"),
            (b"user-agent", b"k6/1.0"),
            (b"accept", b"*/*"),
            (b"accept-encoding", b"gzip"),
        ],
    }
    usage = Usage(
        event_id="01KBUSAGE" + "0" * 17,
        ts=1_764_633_600_000,
        decision_id="01KBBENCH" + "0" * 17,
        app="dev",
        provider="openai",
        model="gpt-4o-mini",
        attempt=1,
        status="ok",
        input_tokens=12,
        output_tokens=5,
        ttfb_ms=40.0,
        latency_ms=41.0,
        cost_usd=0.00001,
    )

    def request(number: int) -> None:
        decision_id = f"01KBBENCH{number:017d}"
        server = tracing.start_server_span(tracer, scope)
        token = tracing.enter_request(server)
        tracing.record_route(
            tracer,
            tracing.now_ns(),
            decision_id=decision_id,
            policy="champion",
            policy_version="v12",
            chosen="openai/gpt-4o-mini",
            propensity=0.9,
            candidates=("openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"),
        )
        remaining = {"openai/gpt-4o-mini tokens per 1m": 150_000.0 - number, "app dev requests per 1d": 9e4}
        tracing.record_quota(tracer, tracing.now_ns(), "openai", "gpt-4o-mini", "granted", remaining)
        attempt = tracing.start_attempt(tracer, "openai", "gpt-4o-mini", 1)
        tracing.trace_headers(attempt)
        tracing.end_attempt(attempt, usage, stream=False)
        tracing.annotate_request(
            server,
            decision_id=decision_id,
            policy_version="v12",
            requested_model="auto",
            overrides={},
            quota_remaining=remaining,
            served=("openai", "gpt-4o-mini"),
        )
        tracing.span_ids(server)
        tracing.leave_request(token)
        tracing.end_server_span(server, 200)

    big = bytearray(THRASH_BYTES)
    other = {f"key{n}": [n, str(n), {"x": n * 1.5}] for n in range(2000)}

    def thrash() -> None:
        bytes(big)  # the data caches
        json.loads(json.dumps(other))  # other code through the instruction caches

    for number in range(min(requests, 1000)):  # the kept pairs filled, as in a proxy that has served a while
        request(number)
    started = time.thread_time_ns()
    for number in range(requests):
        request(number)
    warm_us = (time.thread_time_ns() - started) / requests / 1000
    cold = []
    for number in range(requests):
        thrash()
        started = time.thread_time_ns()
        request(number)
        cold.append(time.thread_time_ns() - started)
    traced.close()
    return {
        "tracing_file": tracing.__file__,
        "warm_us": warm_us,
        "cold_us": statistics.median(cold) / 1000,
    }


def _run_child(root: Path, requests: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(root), "--requests", str(requests)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    if not str(result["tracing_file"]).startswith(str(root)):
        raise SystemExit(f"a child for {root} imported {result['tracing_file']}")
    return result


@contextmanager
def _worktree(revision: str) -> Iterator[Path]:
    """A checkout of ``revision`` in a temporary directory, removed after."""
    with tempfile.TemporaryDirectory(prefix="tracing-calls-") as parent:
        path = Path(parent) / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), revision], check=True
        )
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=True)


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
    runs: dict[str, list[dict[str, object]]] = {side: [] for side in SIDES}
    with _worktree(args.baseline) as baseline:
        roots = {"current": ROOT, "baseline": baseline}
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
    for kind in ("warm", "cold"):
        row = report[kind]
        assert isinstance(row, dict)
        print(f"{kind:6} {row['current']:10.1f} {row['baseline']:10.1f} {row['ratio']:19.2f}")


def _report(
    runs: dict[str, list[dict[str, object]]], baseline: str, requests: int, repeats: int
) -> dict[str, object]:
    report: dict[str, object] = {"baseline": baseline, "requests": requests, "repeats": repeats}
    for kind in ("warm", "cold"):
        medians = {
            side: statistics.median(float(str(run[f"{kind}_us"])) for run in runs[side]) for side in SIDES
        }
        report[kind] = {**medians, "ratio": medians["baseline"] / medians["current"]}
    return report


if __name__ == "__main__":
    main()
