"""``symphony scheduler-weeks``: two simulated weeks, the scheduler off then on, and their scheduler-report.

A simulated clock runs two ``--days``-day weeks from the UTC Monday two weeks before this one,
in 30-minute ticks (``scheduler.simulation``): interactive use on OpenAI, Anthropic and Gemini
with a busy day and a quiet night, and deferrable jobs (``--jobs-per-day``, log-normal sizes,
deadlines 6 to 30 hours out, one to three of the three providers allowed). Week one runs with
the scheduler off (every job is sent as it comes: the baseline); week two with it on: each tick
the waiting jobs are planned as the dispatcher plans them (``scheduler.dispatcher.schedule``),
with the interactive forecast learned from the history in ClickHouse. Every attempt is written
to a ClickHouse of the run's own (embedded chDB in a fresh ``--var-dir``), as the proxy writes
it; then ``scheduler-report`` reads the two weeks back from it and is printed, with the
acceptance: utilisation of at least 90% on each of the three windows in week two, and at least
30% less overflow than week one (exit 1 when either falls short).

Not exercised here (the tests do it): the dispatcher's process, HTTP and the proxy with its hard
quota caps. The planner, windows model, forecast and report are the production code. It takes
a few minutes (``--days 2`` for a short run). The run is kept in ``runs/scheduler-weeks.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cli.report import native_output_to_stderr, progress_printer
from cli.scheduler_report import Period, as_json, period_report, render, week_start
from scheduler.report import PeriodReport, deltas
from scheduler.simulation import WeeksRun, Workload, WorkloadConfig
from sinks.clickhouse import to_arrow
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore
from symphony.catalog import load_catalog, resolve_policy_path
from symphony.clock import monotonic, utc_datetime, wall_ms
from symphony.events import Decision, Usage
from symphony.quotas import DAY_MS, QuotaPolicy, load_quota_policy
from symphony.settings import Settings

GOAL_UTILISATION = 0.9
GOAL_OVERFLOW_CUT = 0.3


def first_monday(now_ms: int) -> int:
    """The UTC Monday two weeks before this week's."""
    return week_start(now_ms) - 2 * 7 * DAY_MS


def acceptance(baseline: PeriodReport, compare: PeriodReport) -> tuple[bool, str]:
    """Whether the weeks meet the goal, and the line that says so with the figures."""
    shares = {p.provider: p.utilisation for p in compare.providers}
    change = deltas(baseline, compare)["overflow_change"]
    cut = None if change is None else -change
    met = all(share is not None and share >= GOAL_UTILISATION for share in shares.values())
    met = met and cut is not None and cut >= GOAL_OVERFLOW_CUT
    utilisation = ", ".join(f"{p} {'-' if s is None else f'{s:.1%}'}" for p, s in shares.items())
    less = "-" if cut is None else f"{cut:.1%}"
    verdict = "MET" if met else "NOT MET"
    return met, (
        f"acceptance {verdict}: week two utilisation {utilisation} (goal >= {GOAL_UTILISATION:.0%} each); "
        f"overflow {less} less than week one (goal >= {GOAL_OVERFLOW_CUT:.0%})"
    )


def run(
    config: WorkloadConfig,
    policy: QuotaPolicy,
    var_dir: Path,
    time_limit_s: float,
    say: Callable[[str], None],
) -> tuple[WeeksRun, PeriodReport, PeriodReport]:
    """The weeks into a fresh ClickHouse in ``var_dir``, then each week's report read back from it."""
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    store = ClickHouseStore.connect(f"chdb://{var_dir.resolve() / 'clickhouse'}")
    try:
        migrate(store)

        def query(sql: str) -> list[list[Any]]:
            return store.query(sql).rows

        def sink(decisions: list[Decision], usage: list[Usage]) -> None:
            for table, records in (("decisions", decisions), ("usage", usage)):
                data, rejected = to_arrow(table, records)
                if rejected:
                    raise ValueError(f"{table}: rows ClickHouse cannot hold: {rejected[:3]}")
                store.insert_arrow(table, data)

        weeks = Workload(config, policy, load_catalog(), query, sink).run(say)
        reports = [period_report(query, _period(config, week), policy, say, time_limit_s) for week in (0, 1)]
    finally:
        store.close()
    return weeks, reports[0], reports[1]


def _period(config: WorkloadConfig, week: int) -> Period:
    since = config.start_ms + week * config.week_ms
    until = since + config.week_ms
    name = f"{utc_datetime(since):%Y-%m-%d}..{utc_datetime(until):%Y-%m-%d}"
    return Period(name, since, until)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = WorkloadConfig(start_ms=0)
    parser.add_argument("--days", type=int, default=defaults.days, help="days per week (default 7)")
    parser.add_argument(
        "--jobs-per-day", type=float, default=defaults.jobs_per_day, help="mean jobs a day (default 260)"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--optimum-time-limit", type=float, default=30.0, metavar="SECONDS", help="per optimum (default 30)"
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=Path("var/scheduler-weeks"),
        help="the run's ClickHouse (emptied at start)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON (the run under 'run')")


def command(settings: Settings, args: argparse.Namespace) -> int:
    if not 1 <= args.days <= 7 or args.jobs_per_day <= 0:
        print("symphony scheduler-weeks: --days must be 1 to 7 and --jobs-per-day above 0", file=sys.stderr)
        return 2
    config = WorkloadConfig(
        start_ms=first_monday(wall_ms()), seed=args.seed, days=args.days, jobs_per_day=args.jobs_per_day
    )
    say = progress_printer()
    say(
        f"two simulated {config.days}-day weeks from {utc_datetime(config.start_ms):%Y-%m-%d} UTC: "
        "the scheduler off in the first, on in the second"
    )
    started = monotonic()
    policy = load_quota_policy(resolve_policy_path(settings.quota_policy_file))
    with native_output_to_stderr():
        weeks, baseline, compare = run(config, policy, args.var_dir, args.optimum_time_limit, say)
    met, verdict = acceptance(baseline, compare)
    seconds = round(monotonic() - started, 1)
    summary = _summary(weeks, seconds)
    body = {"run": summary, "acceptance": verdict, **json.loads(as_json(baseline, compare))}
    _keep(body)
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(f"\n{render(baseline, compare)}\n\n{verdict}\n{_run_line(summary)}", flush=True)
    return 0 if met else 1


def _summary(weeks: WeeksRun, seconds: float) -> dict[str, Any]:
    plans = weeks.plan_seconds
    return {
        "config": asdict(weeks.config),
        "jobs": weeks.jobs,
        "sent": weeks.sent,
        "plans": weeks.plans,
        "plan_seconds_mean": round(sum(plans) / len(plans), 3) if plans else None,
        "plan_seconds_max": round(max(plans), 3) if plans else None,
        "forecast": weeks.forecast_notes[-1] if weeks.forecast_notes else "never learned",
        "seconds": seconds,
    }


def _run_line(summary: dict[str, Any]) -> str:
    return (
        f"run: {summary['jobs']:,} jobs, {summary['plans']} plans in week two "
        f"(mean {summary['plan_seconds_mean']} s, max {summary['plan_seconds_max']} s); "
        f"forecast: {summary['forecast']}; {summary['seconds']} s in all"
    )


def _keep(body: dict[str, Any]) -> None:
    runs = Path("runs")
    runs.mkdir(exist_ok=True)
    (runs / "scheduler-weeks.json").write_text(json.dumps(body, indent=2) + "\n")
