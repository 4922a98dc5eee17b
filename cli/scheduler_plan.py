"""``symphony scheduler-plan --horizon 12h --dry-run [--json]``: the plan of the jobs queued now, per window.

It plans exactly as the dispatcher does (``scheduler.dispatcher.plan_queue``: the waiting jobs
in Redis, the quota policy's windows over the horizon with what each open one holds, the
interactive forecast) and prints, per provider and window: the budget, the tokens already
used, the interactive use forecast, the jobs planned and their tokens, the projected
utilisation ((used + forecast + planned) / budget) and the projected overflow (tokens
beyond the budget). A fixed window is shown whether or not it gets jobs; a first-use
window (Anthropic's) only where the plan opens one, or where one is open now. The jobs no
window has room for before their deadlines are the overflow: the dispatcher sends them at
once, at pay-per-token prices (a job left out whose deadline is beyond the horizon waits for a
later plan instead). It writes nothing (``--dry-run`` is its only mode: the
dispatcher is the one that acts on a plan).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from typing import Any

from cli import report
from scheduler.dispatcher import Schedule, plan_queue
from scheduler.problem import WindowUse
from scheduler.windows import Slot
from symphony.catalog import resolve_policy_path
from symphony.clock import shared_clock, utc_datetime
from symphony.flags import Flags
from symphony.keys import FLAGS_KEY
from symphony.quotas import load_quota_policy
from symphony.quotas.rules import parse_duration
from symphony.redis_client import async_redis, sync_redis
from symphony.settings import Settings

COLUMNS = (
    "provider",
    "window_start",
    "window_end",
    "budget",
    "used",
    "forecast",
    "jobs",
    "planned_tokens",
    "utilisation",
    "overflow_tokens",
)


@dataclass(frozen=True)
class WindowRow:
    slot: Slot
    jobs: int
    planned_tokens: int

    @property
    def utilisation(self) -> float:
        return WindowUse(self.slot, self.jobs, self.planned_tokens).utilisation

    @property
    def overflow_tokens(self) -> int:
        return max(self.slot.used + self.slot.forecast + self.planned_tokens - self.slot.cap, 0)

    def cells(self, *, human: bool) -> list[Any]:
        when = (lambda ms: utc_datetime(ms).strftime("%Y-%m-%d %H:%M")) if human else (lambda ms: ms)
        s = self.slot
        share = f"{self.utilisation:.1%}" if human else round(self.utilisation, 6)
        return [
            s.provider,
            when(s.start_ms),
            when(s.end_ms),
            s.cap,
            s.used,
            s.forecast,
            self.jobs,
            self.planned_tokens,
            share,
            self.overflow_tokens,
        ]


def window_rows(made: Schedule) -> list[WindowRow]:
    """Every window of the plan's problem worth showing, in provider and time order."""
    if made.problem is None or made.plan is None:
        return []
    planned = {id(use.slot): use for use in made.plan.windows}
    rows = []
    for slot in made.problem.slots:
        use = planned.get(id(slot))
        open_now = slot.start_ms <= made.now_ms < slot.end_ms and slot.used > 0
        if slot.first_use and use is None and not open_now:
            continue
        rows.append(WindowRow(slot, use.jobs if use else 0, use.planned_tokens if use else 0))
    return rows


def summary(made: Schedule, horizon_ms: int) -> dict[str, Any]:
    plan = made.plan
    overflow = [due.job_id for due in made.due if not due.provider]  # sent at once
    later = set(plan.overflow if plan is not None else ()) - set(overflow)  # deadline beyond the horizon
    sizes = {job.id: job.tokens for job in made.jobs}
    return {
        "now_ms": made.now_ms,
        "horizon_ms": horizon_ms,
        "scheduler_enabled": made.enabled,
        "queued_jobs": len(made.jobs),
        "method": plan.method if plan else None,
        "status": plan.status if plan else "scheduler off: every queued job is sent at once",
        "plan_seconds": round(plan.seconds, 4) if plan else 0.0,
        "overflow_jobs": len(overflow),
        "overflow_tokens": sum(sizes[job_id] for job_id in overflow),
        "waiting_beyond_horizon": len(later),
    }


async def _plan(settings: Settings, horizon_ms: int) -> Schedule:
    sync = sync_redis(settings.redis_url, socket_connect_timeout=2.0)
    try:
        now = shared_clock(sync).now_ms()
        stored = sync.hgetall(FLAGS_KEY)
    finally:
        sync.close()
    defaults = Flags(settings.learner_enabled, settings.traffic_split, settings.scheduler_enabled)
    enabled = defaults.merged(stored).scheduler_enabled
    client = async_redis(settings.redis_url, socket_connect_timeout=2.0)
    try:
        return await plan_queue(
            client,
            now,
            catalog=settings.read_catalog(),
            policy=load_quota_policy(resolve_policy_path(settings.quota_policy_file)),
            horizon_ms=horizon_ms,
            enabled=enabled,
        )
    finally:
        await client.aclose()


def scheduler_plan(settings: Settings, horizon_ms: int) -> tuple[list[WindowRow], dict[str, Any]]:
    made = asyncio.run(_plan(settings, horizon_ms))
    return window_rows(made), summary(made, horizon_ms)


def render(rows: list[WindowRow], totals: dict[str, Any], *, as_json: bool) -> str:
    if as_json:
        windows = [dict(zip(COLUMNS, row.cells(human=False), strict=True)) for row in rows]
        return json.dumps({**totals, "windows": windows}, indent=2)
    table = report.render_table(COLUMNS, [row.cells(human=True) for row in rows])
    when = utc_datetime(totals["now_ms"]).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{table}\n\n{totals['queued_jobs']} queued jobs at {when}, "
        f"horizon {totals['horizon_ms'] / 3_600_000:g}h; "
        f"plan: {totals['method'] or '-'} ({totals['status']}, {totals['plan_seconds']:.2f} s); "
        f"overflow (sent at once): {totals['overflow_jobs']} jobs, {totals['overflow_tokens']:,} tokens; "
        f"{totals['waiting_beyond_horizon']} jobs due beyond the horizon wait for a later plan"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--horizon", default="12h", type=_duration, help="how far ahead to plan (default 12h; e.g. 6h, 1d)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and write nothing (the only mode: the default)"
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (times in ms)")


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
