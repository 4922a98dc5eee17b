"""What the windows achieved over a past period, beside the clairvoyant optimum (``scheduler-report``).

From the period's answered attempts (``scheduler.history``) and the quota policy:

- **windows**: each provider's subscription windows that lie wholly inside the period. A
  ``fixed`` window is aligned as the quota store aligns it; a ``first_use`` window is
  rebuilt from the use: it opens at the first attempt after the previous one closed.
- **utilisation** of a window: ``min(used, budget) / budget``, where ``used`` is every token
  the provider answered inside it, interactive and jobs; a provider's is the sum over its
  windows of ``min(used, budget)`` over the sum of their budgets.
- **overflow**: tokens beyond a window's budget (billed at pay-per-token prices, or refused
  and sent elsewhere), plus the tokens of jobs answered by a provider with no window at all;
  its **cost** is those tokens at the mean price per token the attempts paid in that window
  (or what those jobs paid).
- **deadline misses**: jobs whose answer came after their deadline.
- **the clairvoyant optimum**: the planner's MILP (``scheduler.planner.plan``, a longer time
  limit) on the whole period at once, knowing every job (its size as used, when it was created,
  its deadline, the providers it allowed) and every window's interactive use as it happened. Its
  utilisation counts the fixed windows and the first-use windows it opens; achieved/optimum is
  the ratio of the two utilisations.

Known simplifications: attempts in a window that straddles the period's edges are not
counted; in the optimum, interactive use in a gap between the first-use windows it opens
would in reality open one there (``scheduler.windows`` says the same).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scheduler.history import Use
from scheduler.planner import plan
from scheduler.problem import Job, Problem
from scheduler.windows import Slot, slots, windowed
from symphony.quotas import Limit, QuotaPolicy

OPTIMUM_TIME_LIMIT_S = 30.0


@dataclass
class Window:
    """One window of the period and what it held."""

    provider: str
    start_ms: int
    end_ms: int
    budget: int
    interactive: int = 0
    jobs: int = 0
    cost_usd: float = 0.0

    @property
    def used(self) -> int:
        return self.interactive + self.jobs

    @property
    def filled(self) -> int:
        return min(self.used, self.budget)

    @property
    def overflow(self) -> int:
        return max(self.used - self.budget, 0)

    @property
    def overflow_cost_usd(self) -> float:
        return self.cost_usd * self.overflow / self.used if self.used else 0.0

    def add(self, use: Use) -> None:
        if use.job:
            self.jobs += use.tokens
        else:
            self.interactive += use.tokens
        self.cost_usd += use.cost_usd


@dataclass
class ProviderFigures:
    provider: str
    window: str  # its length and reset rule, e.g. "3h fixed"
    windows: int = 0
    budget: int = 0
    filled: int = 0
    overflow: int = 0
    overflow_cost_usd: float = 0.0
    optimum_windows: int = 0
    optimum_budget: int = 0
    optimum_filled: int = 0

    @property
    def utilisation(self) -> float | None:
        return self.filled / self.budget if self.budget else None

    @property
    def optimum_utilisation(self) -> float | None:
        return self.optimum_filled / self.optimum_budget if self.optimum_budget else None

    @property
    def ratio(self) -> float | None:
        return _ratio(self.utilisation, self.optimum_utilisation)


@dataclass
class PeriodReport:
    name: str
    since_ms: int
    until_ms: int
    providers: list[ProviderFigures]
    windows: list[Window]
    jobs: int
    job_tokens: int
    interactive_tokens: int
    deadline_misses: list[str]
    unwindowed_job_tokens: int  # jobs answered by a provider without a window
    unwindowed_job_cost_usd: float
    optimum: dict[str, Any] = field(default_factory=dict)

    @property
    def overflow_tokens(self) -> int:
        return sum(p.overflow for p in self.providers) + self.unwindowed_job_tokens

    @property
    def overflow_cost_usd(self) -> float:
        return sum(p.overflow_cost_usd for p in self.providers) + self.unwindowed_job_cost_usd

    @property
    def utilisation(self) -> float | None:
        budget = sum(p.budget for p in self.providers)
        return sum(p.filled for p in self.providers) / budget if budget else None

    @property
    def optimum_utilisation(self) -> float | None:
        budget = sum(p.optimum_budget for p in self.providers)
        return sum(p.optimum_filled for p in self.providers) / budget if budget else None

    @property
    def ratio(self) -> float | None:
        return _ratio(self.utilisation, self.optimum_utilisation)


def _ratio(achieved: float | None, optimum: float | None) -> float | None:
    return achieved / optimum if achieved is not None and optimum else None


def period_windows(uses: list[Use], limits: dict[str, Limit], since_ms: int, until_ms: int) -> list[Window]:
    """Every provider's whole windows in [since, until), each with the use it held."""
    out = []
    for provider, limit in limits.items():
        mine = [use for use in uses if use.provider == provider]
        make = _first_use_windows if limit.window.reset == "first_use" else _fixed_windows
        out += make(mine, limit, since_ms, until_ms)
    return out


def _fixed_windows(uses: list[Use], limit: Limit, since_ms: int, until_ms: int) -> list[Window]:
    length = limit.window.length_ms
    first = -(-since_ms // length) * length
    windows = [
        Window(limit.provider, start, start + length, limit.cap)
        for start in range(first, until_ms - length + 1, length)
    ]
    for use in uses:
        index = (use.ts_ms - first) // length
        if 0 <= index < len(windows):
            windows[index].add(use)
    return windows


def _first_use_windows(uses: list[Use], limit: Limit, since_ms: int, until_ms: int) -> list[Window]:
    length = limit.window.length_ms
    windows: list[Window] = []
    for use in sorted(uses, key=lambda use: use.ts_ms):
        if not windows or use.ts_ms >= windows[-1].end_ms:
            windows.append(Window(limit.provider, use.ts_ms, use.ts_ms + length, limit.cap))
        windows[-1].add(use)
    return [w for w in windows if since_ms <= w.start_ms and w.end_ms <= until_ms]


def report(
    name: str,
    uses: list[Use],
    policy: QuotaPolicy,
    since_ms: int,
    until_ms: int,
    *,
    optimum_time_limit_s: float = OPTIMUM_TIME_LIMIT_S,
) -> PeriodReport:
    """The period's figures, its optimum included (``optimum_time_limit_s`` 0: no optimum)."""
    limits = windowed(policy)
    windows = period_windows(uses, limits, since_ms, until_ms)
    figures = _provider_figures(windows, limits)
    jobs = _jobs(uses)
    unwindowed = [use for use in uses if use.job and use.provider not in limits]
    made = PeriodReport(
        name,
        since_ms,
        until_ms,
        list(figures.values()),
        windows,
        len(jobs),
        sum(use.tokens for use in uses if use.job),
        sum(use.tokens for use in uses if not use.job),
        _missed(uses, jobs),
        sum(use.tokens for use in unwindowed),
        sum(use.cost_usd for use in unwindowed),
    )
    if optimum_time_limit_s > 0:
        made.optimum = _optimum(uses, policy, since_ms, until_ms, figures, optimum_time_limit_s)
    return made


def _provider_figures(windows: Iterable[Window], limits: dict[str, Limit]) -> dict[str, ProviderFigures]:
    figures = {
        p: ProviderFigures(p, f"{limit.window.name} {limit.window.reset}") for p, limit in limits.items()
    }
    for window in windows:
        f = figures[window.provider]
        f.windows += 1
        f.budget += window.budget
        f.filled += window.filled
        f.overflow += window.overflow
        f.overflow_cost_usd += window.overflow_cost_usd
    return figures


def _jobs(uses: Iterable[Use]) -> dict[str, Job]:
    """Each job of the period as the optimum sees it: its size as used, its terms as dispatched."""
    tokens: dict[str, int] = defaultdict(int)
    terms: dict[str, Use] = {}
    for use in uses:
        if use.job:
            tokens[use.job] += use.tokens
            terms.setdefault(use.job, use)
    return {
        job: Job(job, tokens[job], t.deadline_ms, frozenset(t.allowed), earliest_ms=t.created_ms)
        for job, t in terms.items()
    }


def _missed(uses: Iterable[Use], jobs: dict[str, Job]) -> list[str]:
    """The jobs answered after their deadline (a job whose decision recorded none is not judged)."""
    last: dict[str, int] = {}
    for use in uses:
        if use.job:
            last[use.job] = max(last.get(use.job, 0), use.ts_ms)
    return sorted(job for job, at in last.items() if 0 < jobs[job].deadline_ms < at)


class _Interactive:
    """Interactive tokens per provider over any span, from the period's use (perfect knowledge)."""

    def __init__(self, uses: Iterable[Use]) -> None:
        times: dict[str, list[int]] = defaultdict(list)
        totals: dict[str, list[int]] = defaultdict(lambda: [0])
        for use in sorted((u for u in uses if not u.job), key=lambda u: u.ts_ms):
            times[use.provider].append(use.ts_ms)
            totals[use.provider].append(totals[use.provider][-1] + use.tokens)
        self._times, self._totals = times, totals

    def __call__(self, provider: str, start_ms: int, end_ms: int) -> int:
        times, totals = self._times.get(provider, []), self._totals.get(provider, [0])
        return totals[bisect.bisect_left(times, end_ms)] - totals[bisect.bisect_left(times, start_ms)]


def optimum_problem(uses: list[Use], policy: QuotaPolicy, since_ms: int, until_ms: int) -> Problem:
    """The period as one plan: its whole windows with their actual interactive use, all its jobs."""
    every = frozenset(windowed(policy))
    period = slots(policy, since_ms, until_ms - since_ms, _Interactive(uses))
    whole = [s for s in period if since_ms <= s.start_ms and s.end_ms <= until_ms]
    jobs = [
        Job(j.id, j.tokens, j.deadline_ms, j.providers or every, max(j.earliest_ms, since_ms))
        for j in _jobs(uses).values()
    ]
    return Problem(since_ms, jobs, whole)


def _optimum(
    uses: list[Use],
    policy: QuotaPolicy,
    since_ms: int,
    until_ms: int,
    figures: dict[str, ProviderFigures],
    time_limit_s: float,
) -> dict[str, Any]:
    problem = optimum_problem(uses, policy, since_ms, until_ms)
    best = plan(problem, time_limit_s)
    planned: dict[int, int] = defaultdict(int)
    for job in problem.jobs:
        if job.id in best.assignment:
            planned[best.assignment[job.id]] += job.tokens
    interactive_excess = 0
    for index, slot in enumerate(problem.slots):
        if slot.first_use and index not in planned:
            continue  # a first-use candidate the optimum does not open
        _count_optimum(figures[slot.provider], slot, planned[index])
        interactive_excess += max(slot.forecast - slot.cap, 0)
    return {
        "method": best.method,
        "status": best.status,
        "seconds": round(best.seconds, 2),
        "jobs": len(problem.jobs),
        "overflow_tokens": best.overflow_tokens + interactive_excess,
    }


def _count_optimum(figures: ProviderFigures, slot: Slot, planned: int) -> None:
    figures.optimum_windows += 1
    figures.optimum_budget += slot.cap
    figures.optimum_filled += min(slot.forecast + planned, slot.cap)


def as_dict(made: PeriodReport) -> dict[str, Any]:
    """The period's report as JSON (``scheduler-report --json``), times in UTC ms."""
    return {
        "name": made.name,
        "since_ms": made.since_ms,
        "until_ms": made.until_ms,
        "utilisation": _round(made.utilisation),
        "optimum_utilisation": _round(made.optimum_utilisation),
        "achieved_over_optimum": _round(made.ratio),
        "overflow_tokens": made.overflow_tokens,
        "overflow_cost_usd": round(made.overflow_cost_usd, 2),
        "jobs": made.jobs,
        "job_tokens": made.job_tokens,
        "interactive_tokens": made.interactive_tokens,
        "deadline_misses": len(made.deadline_misses),
        "missed_jobs": made.deadline_misses,
        "unwindowed_job_tokens": made.unwindowed_job_tokens,
        "optimum": made.optimum,
        "providers": [_provider_dict(p) for p in made.providers],
        "windows": [_window_dict(w) for w in made.windows],
    }


def _provider_dict(p: ProviderFigures) -> dict[str, Any]:
    return {
        "provider": p.provider,
        "window": p.window,
        "windows": p.windows,
        "budget": p.budget,
        "filled": p.filled,
        "utilisation": _round(p.utilisation),
        "overflow_tokens": p.overflow,
        "overflow_cost_usd": round(p.overflow_cost_usd, 2),
        "optimum_windows": p.optimum_windows,
        "optimum_utilisation": _round(p.optimum_utilisation),
        "achieved_over_optimum": _round(p.ratio),
    }


def _window_dict(w: Window) -> dict[str, Any]:
    return {
        "provider": w.provider,
        "start_ms": w.start_ms,
        "end_ms": w.end_ms,
        "budget": w.budget,
        "interactive": w.interactive,
        "jobs": w.jobs,
        "utilisation": round(w.filled / w.budget, 6),
        "overflow_tokens": w.overflow,
    }


def deltas(baseline: PeriodReport, compare: PeriodReport) -> dict[str, Any]:
    """What changed from ``baseline`` to ``compare``: utilisation (points), overflow, cost, misses."""
    before = {p.provider: p for p in baseline.providers}
    return {
        "utilisation": _diff(compare.utilisation, baseline.utilisation),
        "utilisation_by_provider": {
            p.provider: _diff(p.utilisation, before[p.provider].utilisation) for p in compare.providers
        },
        "overflow_tokens": compare.overflow_tokens - baseline.overflow_tokens,
        "overflow_change": _change(compare.overflow_tokens, baseline.overflow_tokens),
        "overflow_cost_usd": round(compare.overflow_cost_usd - baseline.overflow_cost_usd, 2),
        "deadline_misses": len(compare.deadline_misses) - len(baseline.deadline_misses),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _diff(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else round(after - before, 6)


def _change(after: int, before: int) -> float | None:
    """The relative change (-0.3: 30% less); None from nothing."""
    return round((after - before) / before, 6) if before else None
