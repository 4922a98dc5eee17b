"""Benchmark: planning time for 1,000 and 10,000 queued jobs over a 12h horizon, MILP and greedy.

The slots are the quota policy's subscription windows (OpenAI 3h fixed, Anthropic 5h
first-use on a 30-minute grid of candidate starts, Gemini 1d fixed) from
``scheduler.windows`` with an hour-of-day interactive forecast; the jobs are drawn
from a fixed seed (log-normal token estimates, deadlines across the horizon, one to
three eligible providers) and sized so the queue is about 1.2x the room the windows
leave, so some work must overflow. Each size is planned by ``planner.plan`` (MILP
under its time limit, greedy as the fallback: ``plan_s``, end to end), and by the MILP
and the greedy alone; the table gives their times, the MILP's status, the overflow of
each, and the greedy plan's gap to the MILP (its extra overflow as a share of the
MILP's planned tokens; negative when the greedy plan is better).
Goal: under 2 s for 10,000 jobs. ``--json`` prints JSON; ``--smoke`` runs tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler.forecast import HourOfDayForecaster, PastWindow
from scheduler.milp import solve_milp
from scheduler.planner import QUANTUM, TIME_LIMIT_S, plan, plan_greedy
from scheduler.problem import Job, Problem, assemble
from scheduler.windows import slots
from symphony.clock import monotonic
from symphony.quotas import DAY_MS, HOUR_MS, load_quota_policy

NOW_MS = 1_780_000_000_000 // HOUR_MS * HOUR_MS + 20 * 60_000  # a fixed instant, 20 minutes past an hour
PROVIDERS = ("openai", "anthropic", "gemini")
GOAL_S = 2.0


def history() -> list[PastWindow]:
    """A week of interactive use: busier by day (UTC 08-20), per provider per hour."""
    rate = {"openai": 6_000_000, "anthropic": 5_000_000, "gemini": 8_000_000}
    out = []
    for hour in range(7 * 24):
        start = NOW_MS - DAY_MS * 7 + hour * HOUR_MS
        busy = 1.0 if 8 <= (start // HOUR_MS) % 24 < 20 else 0.3
        out += [PastWindow(p, start, start + HOUR_MS, int(r * busy)) for p, r in rate.items()]
    return out


def problem(count: int, seed: int) -> Problem:
    windows = slots(load_quota_policy(), NOW_MS, forecast=HourOfDayForecaster.from_history(history()))
    room = sum(s.available for s in windows if not s.first_use) + 3 * 45_000_000
    rng = random.Random(seed)
    raw = [rng.lognormvariate(0, 1) for _ in range(count)]
    scale = 1.2 * room / sum(raw)
    jobs = []
    for i, size in enumerate(raw):
        earliest = NOW_MS + rng.randrange(0, 8 * HOUR_MS, 60_000)
        deadline = earliest + rng.randrange(HOUR_MS, 12 * HOUR_MS, 60_000)
        providers = frozenset(rng.sample(PROVIDERS, rng.randint(1, 3)))
        jobs.append(Job(f"j{i}", max(int(size * scale), 1), deadline, providers, earliest))
    return Problem(NOW_MS, jobs, windows)


def measure(count: int, seed: int) -> dict[str, object]:
    prob = problem(count, seed)
    started = monotonic()
    result = solve_milp(prob, TIME_LIMIT_S, QUANTUM)
    milp_s = monotonic() - started
    milp_overflow = (
        None if result.assignment is None else assemble(prob, result.assignment, "", "").overflow_tokens
    )
    greedy = plan_greedy(prob)
    best = plan(prob)
    gap = None
    if milp_overflow is not None:
        gap = round((greedy.overflow_tokens - milp_overflow) / (prob.total_tokens - milp_overflow), 5)
    return {
        "jobs": count,
        "slots": len(prob.slots),
        "milp_s": round(milp_s, 3),
        "milp_status": result.status,
        "greedy_s": round(greedy.seconds, 3),
        "plan_s": round(best.seconds, 3),
        "plan_method": best.method,
        "milp_overflow": milp_overflow,
        "greedy_overflow": greedy.overflow_tokens,
        "greedy_gap": gap,
        "plan_under_goal": best.seconds < GOAL_S,
    }


def table(rows: list[dict[str, object]]) -> str:
    names = list(rows[0])
    widths = [max(len(n), *(len(str(r[n])) for r in rows)) for n in names]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
    lines += ["  ".join(str(r[n]).ljust(w) for n, w in zip(names, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = (50, 200) if args.smoke else (1_000, 10_000)
    rows = [measure(count, args.seed) for count in sizes]
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
