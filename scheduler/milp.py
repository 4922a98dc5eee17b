"""The plan as a MILP, solved by HiGHS (``scipy.optimize.milp``) under a time limit.

Two models share one layout, chosen by size:

- *exact* (at most ``EXACT_COLUMNS`` job-slot pairs): jobs that fit the same slots and
  have the same size are interchangeable, so they form one group and the variables
  are integer counts ``n[g, s]`` of group ``g`` in slot ``s`` (only the slots it fits).
  Its optimum is the plan's optimum.
- *aggregated* (larger queues): one group per set of slots fitted, and ``n[g, s]`` is
  the continuous volume of the group's tokens sent to ``s``. Only the first-use
  binaries stay integer, so HiGHS solves it fast at any queue length. The jobs are
  then packed along the volumes (largest first, into the slot with most of the
  group's volume left) and what does not fit is placed by the greedy ``fill``.

In the exact model sizes are counted in ``quantum`` tokens, rounded up (budgets
down), so a slot never overruns; ``quantum=1`` is exact. The aggregated model counts
plain tokens. A first-use candidate ``s`` has a binary ``y[s]``.

    maximise   sum size[g] * n[g, s] * (1 + EPSILON * early[s])   (= minimise overflow, then fill
                                                                  the windows that expire first)
    subject to sum_s n[g, s] <= count[g]                   every group
               sum_g size[g] * n[g, s] <= available[s]     a fixed slot
               sum_g size[g] * n[g, s] <= available[s] * y[s]   a first-use candidate
               sum of y[s] over candidates covering t <= 1  every candidate start t of a provider

The tie-break ``early[s]`` runs from 1 for the slot that ends first to 0 for the one that ends
last (by end time). Without it, a plan that puts a job in a later window while an earlier
one's budget expires unused is as good as one that fills the earlier window, and HiGHS may
pick either: the next plan, made after the earlier window has expired, then finds the later
window already spent and overflows work the earlier window could have held. With it, among
plans of (nearly) equal overflow the one filling the windows that expire first wins. Its price
is bounded: it can prefer planned tokens ``p`` in an earlier slot over ``p'`` in a later one
only when ``p' < p * (1 + EPSILON)``, so a plan gives up at most ``EPSILON`` (0.1%) of the
tokens it could have planned.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from scheduler.greedy import fill
from scheduler.problem import Job, Problem

EXACT_COLUMNS = 1_500
EPSILON = 1e-3  # the weight of filling windows that expire first (see the docstring)
Group = tuple[int, tuple[int, ...]]  # (size in quanta, the slots it fits)
Groups = dict[Group, list[Job]]
Volumes = dict[tuple[Group, int], float]  # (group, slot) -> count (exact) or quanta (aggregated)


@dataclass(frozen=True)
class MilpResult:
    assignment: dict[str, int] | None  # None: no solution within the limit
    status: str


def solve_milp(
    problem: Problem,
    time_limit_s: float,
    quantum: int = 1,
    gap: float = 1e-4,
    exact_columns: int = EXACT_COLUMNS,
) -> MilpResult:
    columns = sum(len(fits) for fits in problem.feasible.values())
    exact = columns <= exact_columns
    quantum = quantum if exact else 1  # volumes are continuous: no rounding needed
    groups = _groups(problem, quantum, exact)
    if not groups:
        return MilpResult({}, "optimal (nothing fits)")
    model = _Model(problem, groups, quantum, exact)
    options = {"time_limit": time_limit_s, "mip_rel_gap": gap, "disp": False}
    res = milp(
        model.cost,
        constraints=model.constraints(),
        integrality=model.integrality(),
        bounds=model.bounds(),
        options=options,
    )
    if res.x is None:
        return MilpResult(None, f"no solution: {res.message}")
    status = "optimal" if res.status == 0 else f"time limit (gap {res.mip_gap:.2%})"
    volumes, opened = model.solution(res.x)
    if exact:
        return MilpResult(_hand_out(groups, volumes), status)
    return MilpResult(_pack(problem, groups, volumes, opened, quantum), f"aggregated, {status}")


def _groups(problem: Problem, quantum: int, exact: bool) -> Groups:
    groups: Groups = defaultdict(list)
    for job in problem.jobs:
        fits = problem.feasible[job.id]
        if fits:
            groups[(_quanta(job, quantum) if exact else 1, fits)].append(job)
    return groups


def _quanta(job: Job, quantum: int) -> int:
    return -(-job.tokens // quantum)


class _Model:
    """Columns: one per (group, slot it fits), then one binary per first-use candidate used."""

    def __init__(self, problem: Problem, groups: Groups, quantum: int, exact: bool) -> None:
        self.problem, self.groups, self.quantum, self.exact = problem, groups, quantum, exact
        self.pairs = [(key, slot) for key in groups for slot in key[1]]
        self.slots_used = sorted({slot for _, slot in self.pairs})
        self.candidates = [s for s in self.slots_used if problem.slots[s].first_use]
        self.y = {slot: len(self.pairs) + i for i, slot in enumerate(self.candidates)}
        early = _earliness([problem.slots[s].end_ms for s in self.slots_used])
        weight = dict(zip(self.slots_used, early, strict=True))
        gains = [-key[0] * (1 + EPSILON * weight[slot]) for key, slot in self.pairs]
        self.cost = np.array(gains + [0] * len(self.candidates), dtype=float)

    def count(self, key: Group) -> int:
        jobs = self.groups[key]
        return len(jobs) if self.exact else sum(_quanta(job, self.quantum) for job in jobs)

    def integrality(self) -> np.ndarray:
        return np.array([int(self.exact)] * len(self.pairs) + [1] * len(self.candidates))

    def bounds(self) -> Bounds:
        upper = [self.count(key) for key, _ in self.pairs] + [1] * len(self.candidates)
        return Bounds(np.zeros(len(self.cost)), np.array(upper, dtype=float))

    def constraints(self) -> LinearConstraint:
        entries: list[tuple[int, int, float]] = []  # (row, column, coefficient)
        upper: list[float] = []
        self._group_rows(entries, upper)
        self._budget_rows(entries, upper)
        self._overlap_rows(entries, upper)
        rows, cols, vals = zip(*entries, strict=True)
        matrix = coo_array((vals, (rows, cols)), shape=(len(upper), len(self.cost))).tocsr()
        return LinearConstraint(matrix, -np.inf, np.array(upper))

    def _group_rows(self, entries: list[tuple[int, int, float]], upper: list[float]) -> None:
        row_of: dict[Group, int] = {}
        for col, (key, _) in enumerate(self.pairs):
            if key not in row_of:
                row_of[key] = len(upper)
                upper.append(self.count(key))
            entries.append((row_of[key], col, 1.0))

    def _budget_rows(self, entries: list[tuple[int, int, float]], upper: list[float]) -> None:
        row_of = {slot: len(upper) + i for i, slot in enumerate(self.slots_used)}
        for slot in self.slots_used:
            budget = self.problem.slots[slot].available // self.quantum
            upper.append(0.0 if slot in self.y else budget)
            if slot in self.y:
                entries.append((row_of[slot], self.y[slot], -float(budget)))
        entries += [(row_of[slot], col, float(key[0])) for col, (key, slot) in enumerate(self.pairs)]

    def _overlap_rows(self, entries: list[tuple[int, int, float]], upper: list[float]) -> None:
        slots = self.problem.slots
        for point in self.candidates:
            at = slots[point]
            covering = [
                s
                for s in self.candidates
                if slots[s].provider == at.provider and slots[s].start_ms <= at.start_ms < slots[s].end_ms
            ]
            if len(covering) > 1:
                entries += [(len(upper), self.y[slot], 1.0) for slot in covering]
                upper.append(1.0)

    def solution(self, x: np.ndarray) -> tuple[Volumes, set[int]]:
        """The volume of each (group, slot), and the slots open (fixed ones, first-use ones chosen)."""
        volumes = {pair: float(x[col]) for col, pair in enumerate(self.pairs) if x[col] > 1e-9}
        opened = {s for s in self.slots_used if s not in self.y or x[self.y[s]] > 0.5}
        return volumes, opened


def _earliness(ends: list[int]) -> list[float]:
    """Each end time's place between the last (0) and the first (1)."""
    first, last = min(ends, default=0), max(ends, default=0)
    return [1.0 if last == first else (last - end) / (last - first) for end in ends]


def _hand_out(groups: Groups, volumes: Volumes) -> dict[str, int]:
    """Exact model: hand each group's jobs out to slots by the counts."""
    out: dict[str, int] = {}
    handed: dict[Group, int] = defaultdict(int)
    for (key, slot), count in volumes.items():
        for job in groups[key][handed[key] : handed[key] + round(count)]:
            out[job.id] = slot
        handed[key] += round(count)
    return out


def _pack(
    problem: Problem, groups: Groups, volumes: Volumes, opened: set[int], quantum: int
) -> dict[str, int]:
    """Aggregated model: pack each group's jobs along its volumes, then fill in what is left."""
    remaining = {slot: problem.slots[slot].available for slot in opened}
    assignment: dict[str, int] = {}
    left: list[Job] = []
    for key, jobs in groups.items():
        quota = {s: volumes.get((key, s), 0.0) * quantum for s in key[1] if s in opened}
        for job in sorted(jobs, key=lambda job: -job.tokens):
            room = [s for s, q in quota.items() if q >= job.tokens and remaining[s] >= job.tokens]
            if not room:
                left.append(job)
                continue
            slot = max(room, key=lambda s: quota[s])
            quota[slot] -= job.tokens
            remaining[slot] -= job.tokens
            assignment[job.id] = slot
    fill(problem, left, remaining, assignment)
    return assignment
