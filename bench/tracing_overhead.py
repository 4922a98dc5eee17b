"""Measure what tracing costs the proxy: its overhead and CPU per request with tracing off and on.

One run starts a Redis server, the simulator, an OTLP/HTTP receiver that accepts every export
and discards it, and two proxies in front of the same simulator: ``symphony`` (tracing off,
no ``TEMPO_ENDPOINT`` nor ``SPANS_TOKEN``) and ``symphony-traced`` (``TEMPO_ENDPOINT`` at the
receiver, one destination as ``symphony up``'s default, the control plane, is one). For every
rate k6 drives the simulator straight (``direct``, the baseline) and each proxy, pinned to
openai/gpt-4o-mini with ``max_tokens`` 5 (a deterministic 42.5 ms answer), non-streaming,
``--repeats`` times with the order alternating. The conventions and the helpers are
``bench/proxy_overhead.py``'s: overhead is a proxy's percentile minus direct's in the same
repeat; CPU per request is utime+stime of the proxy's process tree plus the Redis server's.

The table gives, per rate, each target's median over the repeats, then tracing's cost: the
traced proxy's overhead and CPU minus the untraced one's (goal: at most +0.2 ms p50 and +10 %
CPU per request). The traced proxy's ``/metrics`` says how many spans it exported and dropped,
per request, so a run whose spans did not reach the receiver shows it.

``--baseline REF`` adds the traced proxy as of git commit ``REF`` (exported under ``<var-dir>/baseline/``),
run side by side with today's traced proxy after each repeat: what a change to tracing did, both measured at
the same moment (the sequential figures drift more than most changes move them).

``--smoke``: a few seconds at 20 req/s, one repeat; exits non-zero when a target fails, a
figure is missing, or the traced proxy exported no span or dropped one.

    .venv/bin/python bench/tracing_overhead.py                 # 3 x 20 s at 200 and 500 req/s
    .venv/bin/python bench/tracing_overhead.py --rates 200 --duration 10 --json
    .venv/bin/python bench/tracing_overhead.py --rates 500 --repeats 5 --duration 15 --baseline HEAD~1
    .venv/bin/python bench/tracing_overhead.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import proxy_overhead as po
from prometheus_client.parser import text_string_to_metric_families

from symphony.settings import SPAN_EXPORT_DELAY_MS

TARGETS = ("direct", "symphony", "symphony-traced")
# The side-by-side pair the goal is read from: tracing off, then on.
GOAL_PAIR = ("symphony", "symphony-traced")
# The traced proxy as of another commit (--baseline), run side by side with today's traced one only.
BASELINE_TRACED = "symphony-traced-baseline"
GOAL_P50_MS = 0.2
GOAL_CPU_SHARE = 0.10
# How long a span may wait in the traced proxy's queue: OTEL_BSP_SCHEDULE_DELAY's default, as deployed.
SCHEDULE_DELAY_S = SPAN_EXPORT_DELAY_MS / 1000


# --------------------------------------------------------------------------- the receiver


class DiscardingReceiver:
    """An OTLP/HTTP endpoint that answers every export 200 and keeps only a count of them."""

    def __init__(self) -> None:
        self.exports = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.exports += 1
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[DiscardingReceiver]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


# --------------------------------------------------------------------------- the proxies


def proxy_target(
    stack: po.Stack,
    name: str,
    exits: ExitStack,
    timeout: float,
    env: dict[str, str],
    checkout: Path | None = None,
) -> po.Target:
    """One Symphony proxy (pinned target), started and checked, stopped on exit; running the code in
    ``checkout`` (an exported commit, ``po.baseline_checkout``) when given."""
    if checkout is not None:
        env = {**env, "VAR_DIR": str(stack.var / name)}
    service, pinned = po.pinned_symphony(stack, po.free_port(), name, env)
    if checkout is not None:
        po.run_from_checkout(service, checkout)
    exits.callback(service.stop)
    po.say(f"starting {name} with TEMPO_ENDPOINT={env['TEMPO_ENDPOINT']!r}")
    service.start(timeout)
    target = replace(pinned, pid=service.pid, redis_pid=stack.redis_pid)
    po.smoke_check(target, 5)
    return target


def span_counts(target: po.Target) -> dict[str, float]:
    """The proxy's span counters from its ``/metrics``."""
    base = target.url.split("/v1/", 1)[0]
    families = text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=5.0).text)
    samples = [sample for family in families for sample in family.samples]  # summed over destinations
    return {
        "exported": sum(s.value for s in samples if s.name == "symphony_spans_exported_total"),
        "dropped": sum(s.value for s in samples if s.name == "symphony_spans_dropped_total"),
    }


# --------------------------------------------------------------------------- measuring


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds so far of ``pid``'s main thread (the event loop) and of its other threads together
    (the span exporter's, with tracing on); a thread that has ended is no longer counted."""
    loop = others = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            ticks = po.cpu_ticks(Path(f"/proc/{pid}/task/{tid}/stat"))
        except FileNotFoundError:
            continue
        if int(tid) == pid:
            loop += ticks
        else:
            others += ticks
    return loop / po.CLK_TCK, others / po.CLK_TCK


@dataclass
class Measured:
    """One target at one rate in one repeat; a proxy's CPU split between its loop and other threads."""

    row: po.Row
    spans_exported_per_request: float | None = None
    spans_dropped_per_request: float | None = None
    loop_cpu_ms_per_request: float | None = None
    threads_cpu_ms_per_request: float | None = None


def measure(bench: po.Bench, target: po.Target, rate: int, duration_s: float) -> Measured:
    """One measured run after its warm-up; the traced proxy's spans counted over the run alone."""
    if bench.warmup_s > 0:
        po.say(f"{rate} req/s -> {target.name}: {bench.warmup_s:g}s warm-up")
        log = bench.stack.var / "logs" / f"k6-{target.name}-{rate}-warmup.log"
        po.run_k6(target, po.LoadSpec(rate, bench.warmup_s, bench.timeout_s, bench.max_tokens), log)
    traced = target.name == "symphony-traced"
    if traced:
        time.sleep(SCHEDULE_DELAY_S * 2)  # the warm-up's spans are exported before the count starts
    before = span_counts(target) if traced else None
    threads_before = thread_cpu_s(target.pid) if target.pid is not None else None
    row = po._measure_one(replace(bench, warmup_s=0), target, rate, duration_s)
    measured = Measured(row)
    if threads_before is not None and target.pid is not None and row.requests:
        loop, others = (b - a for a, b in zip(threads_before, thread_cpu_s(target.pid), strict=True))
        measured.loop_cpu_ms_per_request = loop * 1000 / row.requests
        measured.threads_cpu_ms_per_request = others * 1000 / row.requests
    if before is not None and row.requests:
        time.sleep(SCHEDULE_DELAY_S * 2)  # and the run's spans before it ends
        after = span_counts(target)
        measured.spans_exported_per_request = (after["exported"] - before["exported"]) / row.requests
        measured.spans_dropped_per_request = (after["dropped"] - before["dropped"]) / row.requests
    return measured


def order_of(repeat: int) -> list[str]:
    return list(TARGETS) if repeat % 2 == 0 else list(TARGETS[::-1])


def run(args: argparse.Namespace) -> tuple[list[Measured], list[po.Pair]]:
    var: Path = args.var_dir.resolve()
    checkout = po.baseline_checkout(var, args.baseline)[0] if args.baseline else None
    with (
        DiscardingReceiver().running() as receiver,
        po.running_stack(var, args.start_timeout) as (stack, sim),
        ExitStack() as exits,
    ):
        auth = {"Authorization": f"Bearer {po.DUMMY_KEY}"}
        direct = po.Target("direct", f"{stack.sim_openai_base}/chat/completions", po.MODEL, auth)
        po.smoke_check(direct, args.max_tokens)
        # One destination, the receiver, as `symphony up`'s default has one (the control plane).
        traced = {"TEMPO_ENDPOINT": receiver.url, "SPANS_TOKEN": ""}
        targets = {
            "direct": direct,
            # Off explicitly: an endpoint or a spans token in the caller's environment would trace both.
            "symphony": proxy_target(
                stack, "symphony", exits, args.start_timeout, {"TEMPO_ENDPOINT": "", "SPANS_TOKEN": ""}
            ),
            "symphony-traced": proxy_target(stack, "symphony-traced", exits, args.start_timeout, traced),
        }
        if checkout is not None:
            baseline = proxy_target(stack, BASELINE_TRACED, exits, args.start_timeout, traced, checkout)
        bench = po.Bench(stack, sim.pid, args.warmup, args.timeout, args.max_tokens, args.max_failed_share)
        measured: list[Measured] = []
        pairs: list[po.Pair] = []
        for rate in args.rates:
            for repeat in range(args.repeats):
                for position, name in enumerate(order_of(repeat)):
                    one = measure(bench, targets[name], rate, args.duration)
                    one.row.repeat, one.row.position = repeat, position
                    measured.append(one)
                if args.side_by_side:
                    off, on = (targets[name] for name in GOAL_PAIR)
                    pairs.append(po.measure_side_by_side(bench, off, on, rate, args.duration, repeat))
                    if checkout is not None:
                        before = po.measure_side_by_side(bench, baseline, on, rate, args.duration, repeat)
                        pairs.append(before)
        po.say(f"the receiver took {receiver.exports} exports")
    po.add_overhead([one.row for one in measured], {name: "direct" for name in TARGETS})
    return measured, pairs


# --------------------------------------------------------------------------- side by side


def side_by_side_verdict(found: po.PairedDifference) -> bool | None:
    """Whether tracing's side-by-side cost (traced minus untraced) is within the goal; None for another pair
    (today's traced proxy against ``--baseline``'s) or a missing figure."""
    if (found.first, found.second) != GOAL_PAIR:
        return None
    if found.p50_ms is None or found.cpu_share is None:
        return None
    return found.p50_ms <= GOAL_P50_MS and found.cpu_share <= GOAL_CPU_SHARE


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Summary:
    rate: int
    target: str
    repeats: int
    sustained_repeats: int
    failed_share: float
    p50_ms: float | None
    p99_ms: float | None
    overhead_p50_ms: float | None
    overhead_p99_ms: float | None
    cpu_ms_per_request: float | None
    loop_cpu_ms_per_request: float | None
    threads_cpu_ms_per_request: float | None
    spans_exported_per_request: float | None
    spans_dropped_per_request: float | None
    errors: tuple[str, ...]


@dataclass(frozen=True)
class Cost:
    """Tracing's cost at one rate: the traced proxy's medians minus the untraced one's."""

    rate: int
    overhead_p50_ms: float | None
    overhead_p99_ms: float | None
    cpu_ms_per_request: float | None
    cpu_share: float | None  # of the untraced proxy's CPU per request
    within_goal: bool | None


def summarize(measured: list[Measured]) -> list[Summary]:
    summaries = []
    for rate in sorted({one.row.rate for one in measured}):
        for target in TARGETS:
            group = [one for one in measured if one.row.rate == rate and one.row.target == target]
            rows = [one.row for one in group if one.row.error is None]
            summaries.append(
                Summary(
                    rate=rate,
                    target=target,
                    repeats=len(group),
                    sustained_repeats=sum(one.row.sustained for one in group),
                    failed_share=max((one.row.failed_share for one in group), default=1.0),
                    p50_ms=po.median_of([row.p50_ms for row in rows]),
                    p99_ms=po.median_of([row.p99_ms for row in rows]),
                    overhead_p50_ms=po.median_of([row.overhead_p50_ms for row in rows]),
                    overhead_p99_ms=po.median_of([row.overhead_p99_ms for row in rows]),
                    cpu_ms_per_request=po.median_of([row.cpu_ms_per_request for row in rows]),
                    loop_cpu_ms_per_request=po.median_of([one.loop_cpu_ms_per_request for one in group]),
                    threads_cpu_ms_per_request=po.median_of(
                        [one.threads_cpu_ms_per_request for one in group]
                    ),
                    spans_exported_per_request=po.median_of(
                        [one.spans_exported_per_request for one in group]
                    ),
                    spans_dropped_per_request=po.median_of([one.spans_dropped_per_request for one in group]),
                    errors=tuple(sorted({one.row.error for one in group if one.row.error})),
                )
            )
    return summaries


def costs(summaries: list[Summary]) -> list[Cost]:
    found: list[Cost] = []
    for rate in sorted({summary.rate for summary in summaries}):
        by_target = {s.target: s for s in summaries if s.rate == rate}
        off, on = by_target["symphony"], by_target["symphony-traced"]
        cpu = po.minus(on.cpu_ms_per_request, off.cpu_ms_per_request)
        share = cpu / off.cpu_ms_per_request if cpu is not None and off.cpu_ms_per_request else None
        p50 = po.minus(on.overhead_p50_ms, off.overhead_p50_ms)
        within = None if p50 is None or share is None else p50 <= GOAL_P50_MS and share <= GOAL_CPU_SHARE
        found.append(Cost(rate, p50, po.minus(on.overhead_p99_ms, off.overhead_p99_ms), cpu, share, within))
    return found


def smoke_failures(summaries: list[Summary]) -> list[str]:
    problems: list[str] = []
    for summary in summaries:
        name = f"{summary.target} at {summary.rate} req/s"
        if summary.errors:
            problems.append(f"{name}: {'; '.join(summary.errors)}")
            continue
        if summary.sustained_repeats < summary.repeats:
            problems.append(f"{name}: failed share {summary.failed_share:.1%}")
        if summary.p50_ms is None:
            problems.append(f"{name}: no latency")
        if summary.target != "direct" and (
            summary.overhead_p50_ms is None or summary.cpu_ms_per_request is None
        ):
            problems.append(f"{name}: no overhead or CPU figure")
        if summary.target == "symphony-traced":
            if not summary.spans_exported_per_request:
                problems.append(f"{name}: no span reached the receiver")
            if summary.spans_dropped_per_request:
                problems.append(f"{name}: {summary.spans_dropped_per_request:.2f} spans dropped per request")
    return problems


# --------------------------------------------------------------------------- output


def _verdict(within_goal: bool | None) -> str:
    if within_goal is None:
        return "-"
    return "met" if within_goal else "NOT met"


def _threads(summary: Summary) -> str:
    if summary.loop_cpu_ms_per_request is None or summary.threads_cpu_ms_per_request is None:
        return ""
    return f"{summary.loop_cpu_ms_per_request:.3f} / {summary.threads_cpu_ms_per_request:.3f}"


def table(summaries: list[Summary], found: list[Cost], args: argparse.Namespace, load: float) -> str:
    head = (
        f"Tracing's cost to the proxy ({args.duration:g} s per run, {args.repeats} repeat(s) per rate in "
        f"alternating order, k6 constant-arrival-rate, openai/{po.MODEL} pinned, "
        f"max_tokens {args.max_tokens}); medians over the repeats; CPU includes Redis"
    )
    columns = (
        "rate",
        "target",
        "p50 ms",
        "p99 ms",
        "overhead p50",
        "overhead p99",
        "CPU ms/req",
        "loop / other threads",
        "failed",
        "spans/req",
    )
    lines = [list(columns)]
    for s in summaries:
        spans = ""
        if s.spans_exported_per_request is not None:
            spans = f"{s.spans_exported_per_request:.2f} out, {s.spans_dropped_per_request or 0:.2f} dropped"
        lines.append(
            [
                str(s.rate),
                s.target,
                po.figure(s.p50_ms, ".1f"),
                po.figure(s.p99_ms, ".1f"),
                "" if s.target == "direct" else po.figure(s.overhead_p50_ms, "+.2f"),
                "" if s.target == "direct" else po.figure(s.overhead_p99_ms, "+.2f"),
                "" if s.target == "direct" else po.figure(s.cpu_ms_per_request, ".2f"),
                _threads(s),
                f"{s.failed_share:.1%}",
                spans,
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    body = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    body.insert(1, "  ".join("-" * w for w in widths))
    cost_lines = [
        f"tracing at {c.rate} req/s: overhead p50 {po.figure(c.overhead_p50_ms, '+.2f')} ms, "
        f"p99 {po.figure(c.overhead_p99_ms, '+.2f')} ms, "
        f"CPU {po.figure(c.cpu_ms_per_request, '+.3f')} ms/req "
        f"({po.figure(None if c.cpu_share is None else c.cpu_share * 100, '+.1f')} %); "
        f"goal +{GOAL_P50_MS} ms p50 and +{GOAL_CPU_SHARE:.0%} CPU: {_verdict(c.within_goal)}"
        for c in found
    ]
    load_line = f"1-minute load average before the run: {load:.2f} on {os.cpu_count()} cores"
    return "\n".join([head, load_line, "", *body, "", *cost_lines])


def paired_table(differences: list[po.PairedDifference]) -> str:
    if not differences:
        return ""
    verdicts = [
        f"tracing at {found.rate} req/s side by side: goal +{GOAL_P50_MS} ms p50 and "
        f"+{GOAL_CPU_SHARE:.0%} CPU: {_verdict(side_by_side_verdict(found))}"
        for found in differences
        if (found.first, found.second) == GOAL_PAIR
    ]
    return "\n".join([po.paired_table(differences), *verdicts])


def as_json(
    measured: list[Measured],
    summaries: list[Summary],
    found: list[Cost],
    pairs: list[po.Pair],
    side_by_side: list[po.PairedDifference],
    args: argparse.Namespace,
    load: float,
) -> str:
    config = {
        **po.run_config(args, load),
        "goal": {"overhead_p50_ms": GOAL_P50_MS, "cpu_share": GOAL_CPU_SHARE},
    }
    return json.dumps(
        {
            "config": config,
            "cost": [po._rounded(asdict(c)) for c in found],
            "side_by_side": [
                {**po._rounded(asdict(found)), "within_goal": side_by_side_verdict(found)}
                for found in side_by_side
            ],
            "side_by_side_rows": [
                {
                    "rate": pair.rate,
                    "repeat": pair.repeat,
                    "first": po._rounded(asdict(pair.first)),
                    "second": po._rounded(asdict(pair.second)),
                }
                for pair in pairs
            ],
            "summary": [po._rounded(asdict(s)) for s in summaries],
            "rows": [
                po._rounded(
                    {
                        **asdict(one.row),
                        "spans_exported_per_request": one.spans_exported_per_request,
                        "spans_dropped_per_request": one.spans_dropped_per_request,
                        "loop_cpu_ms_per_request": one.loop_cpu_ms_per_request,
                        "threads_cpu_ms_per_request": one.threads_cpu_ms_per_request,
                    }
                )
                for one in measured
            ],
        },
        indent=2,
        default=str,
    )


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the proxy's overhead and CPU per request with tracing off and on, in one run."
    )
    add = parser.add_argument
    add("--rates", type=po._rates, default=[200, 500], help="request rates in req/s (default 200,500)")
    add("--duration", type=float, default=20.0, help="measured seconds per target and rate (default 20)")
    add("--warmup", type=float, default=3.0, help="warm-up seconds before each measured run (default 3)")
    add("--repeats", type=int, default=3, help="runs of each rate, order alternating (default 3)")
    add("--timeout", type=float, default=5.0, help="per-request timeout in seconds (default 5)")
    add("--max-tokens", type=int, default=5, help="max_tokens per request; keep it 5 (default 5)")
    add("--max-failed-share", type=float, default=0.01, help="sustained at or below this failed share")
    add("--var-dir", type=Path, default=po.ROOT / "var" / "bench-tracing", help="logs and data")
    add("--start-timeout", type=float, default=120.0, help="seconds to wait for each process to answer")
    add(
        "--no-side-by-side",
        dest="side_by_side",
        action="store_false",
        help="skip the side-by-side runs (both proxies at once, half the rate each) after each repeat",
    )
    add(
        "--baseline",
        metavar="REF",
        help="also run the traced proxy as of git REF (exported under <var-dir>/baseline/) side by side "
        "with today's after each repeat: a change to tracing measured against the code before it, at once",
    )
    add("--smoke", action="store_true", help="3 s at 20 req/s, one repeat; exit 1 if anything broke")
    add("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rates, args.duration, args.warmup, args.repeats = [20], 3.0, 1.0, 1
        args.var_dir = Path(tempfile.mkdtemp(prefix="symphony-bench-tracing-smoke-"))
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.baseline and not args.side_by_side:
        parser.error("--baseline is measured side by side only: drop --no-side-by-side")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load = po.load_average()
    measured, pairs = run(args)
    summaries = summarize(measured)
    found, side_by_side = costs(summaries), po.paired_differences(pairs)
    if args.json:
        print(as_json(measured, summaries, found, pairs, side_by_side, args, load))
    else:
        print(table(summaries, found, args, load))
        print(paired_table(side_by_side))
    if args.smoke:
        asked = [GOAL_PAIR] if args.side_by_side else []
        problems = smoke_failures(summaries) + po.paired_failures(side_by_side, asked, args.max_failed_share)
        for problem in problems:
            po.say(f"SMOKE FAILED: {problem}")
        if problems:
            return 1  # the logs stay in the temporary var dir
        shutil.rmtree(args.var_dir, ignore_errors=True)
        po.say("smoke: both proxies answered with every figure, and the traced one's spans arrived")
    return 0


if __name__ == "__main__":
    sys.exit(main())
