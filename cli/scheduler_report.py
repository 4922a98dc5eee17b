"""``symphony scheduler-report --baseline last_week --compare this_week [--json]``: what the windows achieved.

For each of the two periods, from ClickHouse (through the engine's query API, as `symphony sql`
does): per provider with a subscription window (OpenAI 3h fixed, Anthropic 5h from first use,
Gemini daily), the windows wholly inside the period, their utilisation (tokens used inside the
budget / budget, interactive and jobs together), the overflow (tokens beyond a window's budget,
and jobs answered by a provider without a window: pay-per-token) and its cost, and the jobs
answered after their deadline; then the deltas from the baseline to the compared period.
Each period also shows the clairvoyant optimum: the planner's MILP over the whole period with
perfect knowledge of its jobs (sizes as used, creation, deadlines, providers allowed) and of the
interactive use of every window, and the ratio of the utilisation achieved to the optimum's
(``scheduler.report`` defines every figure).

Periods: ``last_week`` (Monday 00:00 UTC to Monday 00:00), ``this_week`` (Monday 00:00 UTC to
now), ``yesterday``, ``today``, or explicit ``START..END`` in UTC (``2026-11-16..2026-11-23``,
or with times, ``2026-11-16T06:00..2026-11-16T18:00``; END is excluded). "Now" is the stack's
clock (simulated when the stack runs on one), else the wall clock.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from cli import report as tables
from cli.report import progress_printer
from scheduler.history import Query, period_use
from scheduler.report import OPTIMUM_TIME_LIMIT_S, PeriodReport, ProviderFigures, as_dict, deltas, report
from symphony import engine_client
from symphony.catalog import resolve_policy_path
from symphony.clock import shared_clock, utc_datetime, wall_ms
from symphony.quotas import DAY_MS, QuotaPolicy, load_quota_policy
from symphony.redis_client import sync_redis
from symphony.settings import Settings

WEEK_MS = 7 * DAY_MS
MONDAY_OFFSET_MS = 4 * DAY_MS  # the epoch was a Thursday
COLUMNS = (
    "provider",
    "window",
    "period",
    "windows",
    "utilisation",
    "optimum",
    "achieved/optimum",
    "overflow_tokens",
    "overflow_usd",
)


@dataclass(frozen=True)
class Period:
    name: str
    since_ms: int
    until_ms: int

    def label(self) -> str:
        return f"{self.name} ({_when(self.since_ms)} .. {_when(self.until_ms)} UTC)"


def _when(ms: int) -> str:
    return utc_datetime(ms).strftime("%Y-%m-%d %H:%M")


def week_start(now_ms: int) -> int:
    """This week's Monday 00:00 UTC."""
    return now_ms - (now_ms - MONDAY_OFFSET_MS) % WEEK_MS


def parse_period(text: str, now_ms: int) -> Period:
    """A named period, or ``START..END`` in UTC; ``ValueError`` says what is wrong."""
    monday = week_start(now_ms)
    midnight = now_ms - now_ms % DAY_MS
    named = {
        "last_week": (monday - WEEK_MS, monday),
        "this_week": (monday, now_ms),
        "yesterday": (midnight - DAY_MS, midnight),
        "today": (midnight, now_ms),
    }
    if text in named:
        return Period(text, *named[text])
    start, sep, end = text.partition("..")
    if not sep:
        raise ValueError(f"{text!r}: expected {', '.join(named)} or START..END (e.g. 2026-11-16..2026-11-23)")
    since, until = _instant(start), _instant(end)
    if since >= until:
        raise ValueError(f"{text!r}: the end must come after the start")
    return Period(text, since, until)


def _instant(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a UTC date or date and time (YYYY-MM-DD[THH:MM])") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def period_report(
    query: Query,
    period: Period,
    policy: QuotaPolicy,
    say: Callable[[str], None],
    optimum_time_limit_s: float = OPTIMUM_TIME_LIMIT_S,
) -> PeriodReport:
    say(f"reading {period.label()} from ClickHouse")
    uses = period_use(query, period.since_ms, period.until_ms)
    jobs = len({use.job for use in uses if use.job})
    if optimum_time_limit_s > 0:
        say(f"  {len(uses):,} answered attempts, {jobs:,} jobs; solving the clairvoyant optimum")
    return report(
        period.name, uses, policy, period.since_ms, period.until_ms, optimum_time_limit_s=optimum_time_limit_s
    )


def as_json(baseline: PeriodReport, compare: PeriodReport) -> str:
    body = {"baseline": as_dict(baseline), "compare": as_dict(compare), "deltas": deltas(baseline, compare)}
    return json.dumps(body, indent=2)


def render(baseline: PeriodReport, compare: PeriodReport) -> str:
    rows = []
    for before, after in zip(baseline.providers, compare.providers, strict=True):
        rows += [_row(before, "baseline"), _row(after, "compare")]
        cost = round(after.overflow_cost_usd - before.overflow_cost_usd, 2)
        points = _points(after.utilisation, before.utilisation)
        overflow = after.overflow - before.overflow
        rows.append([after.provider, after.window, "delta", "", points, "", "", overflow, cost])
    change = deltas(baseline, compare)
    lines = [
        f"baseline: {_label(baseline)}",
        f"compare:  {_label(compare)}",
        "",
        tables.render_table(COLUMNS, rows),
        "",
    ]
    for made in (baseline, compare):
        lines.append(_summary(made))
    overflow = change["overflow_change"]
    lines.append(
        f"delta: utilisation {_points(compare.utilisation, baseline.utilisation)}, overflow "
        f"{change['overflow_tokens']:+,} tokens ({'-' if overflow is None else f'{overflow:+.1%}'}), "
        f"${change['overflow_cost_usd']:+,.2f}, deadline misses {change['deadline_misses']:+d}"
    )
    return "\n".join(lines)


def _label(made: PeriodReport) -> str:
    return Period(made.name, made.since_ms, made.until_ms).label()


def _row(p: ProviderFigures, period: str) -> list[Any]:
    return [
        p.provider,
        p.window,
        period,
        p.windows,
        _share(p.utilisation),
        _share(p.optimum_utilisation),
        "-" if p.ratio is None else f"{p.ratio:.3f}",
        p.overflow,
        round(p.overflow_cost_usd, 2),
    ]


def _summary(made: PeriodReport) -> str:
    opt = made.optimum
    optimum = (
        f"optimum {_share(made.optimum_utilisation)} ({opt['method']}, {opt['status']}, {opt['seconds']} s), "
        f"achieved/optimum {'-' if made.ratio is None else f'{made.ratio:.3f}'}"
        if opt
        else "optimum not computed"
    )
    return (
        f"{made.name}: utilisation {_share(made.utilisation)}, {optimum}; overflow {made.overflow_tokens:,} "
        f"tokens (${made.overflow_cost_usd:,.2f}); {made.jobs:,} jobs ({made.job_tokens:,} tokens), "
        f"{len(made.deadline_misses)} answered after their deadline"
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _points(after: float | None, before: float | None) -> str:
    return "-" if after is None or before is None else f"{(after - before) * 100:+.1f} pts"


def stack_now(settings: Settings) -> int:
    """The stack's clock (simulated or not) when its Redis answers, else the wall clock."""
    client = sync_redis(settings.redis_url, socket_connect_timeout=1.0, socket_timeout=2.0)
    try:
        return shared_clock(client).now_ms()
    except redis.RedisError:
        return wall_ms()
    finally:
        client.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline", default="last_week", help="the period to compare against (default last_week)"
    )
    parser.add_argument("--compare", default="this_week", help="the period compared (default this_week)")
    parser.add_argument(
        "--optimum-time-limit",
        type=float,
        default=OPTIMUM_TIME_LIMIT_S,
        metavar="SECONDS",
        help=f"the MILP's time limit per clairvoyant optimum (default {OPTIMUM_TIME_LIMIT_S:g}; 0: skip it)",
    )
    parser.add_argument("--json", action="store_true", help="print both periods and the deltas as JSON")


def command(settings: Settings, args: argparse.Namespace) -> int:
    now = stack_now(settings)
    try:
        periods = [parse_period(text, now) for text in (args.baseline, args.compare)]
    except ValueError as exc:
        print(f"symphony scheduler-report: {exc}", file=sys.stderr)
        return 2
    say = progress_printer()
    engine = settings.engine_url_as("analyst")

    def query(sql: str) -> list[list[Any]]:
        return engine_client.query(engine, sql, timeout=120).rows

    policy = load_quota_policy(resolve_policy_path(settings.quota_policy_file))
    with tables.native_output_to_stderr():
        baseline, compare = (
            period_report(query, period, policy, say, args.optimum_time_limit) for period in periods
        )
    print(as_json(baseline, compare) if args.json else render(baseline, compare), flush=True)
    return 0
