"""What a plan is made of: jobs, the problem (jobs and slots at an instant), and the plan.

A job *fits* a slot when the slot's provider is one the job allows, the job can run
inside the slot (the span from ``max(slot start, job earliest start, now)`` to
``min(slot end, job deadline)`` is not empty; the dispatcher starts it at the
beginning of that span) and its tokens fit the slot's available budget. A plan is
*feasible* when every assigned job fits its slot, no slot holds more than its
available budget, and no two first-use candidates of a provider that overlap both
hold jobs (the tests check plans against these definitions on their own). Its
objective is the overflow: the tokens of the jobs it leaves out (they would run at
pay-per-token prices or miss their deadline); lower is better.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from scheduler.windows import Slot


@dataclass(frozen=True, slots=True)
class Job:
    """A deferrable job: its token estimate, when it may start, its deadline, the providers allowed.

    Models allowed are resolved to their providers before planning (windows are per provider).
    """

    id: str
    tokens: int
    deadline_ms: int
    providers: frozenset[str]
    earliest_ms: int = 0


@dataclass(frozen=True)
class Problem:
    now_ms: int
    jobs: list[Job]
    slots: list[Slot]

    def fits(self, job: Job, slot: Slot) -> bool:
        if slot.provider not in job.providers or job.tokens > slot.available:
            return False
        return max(slot.start_ms, job.earliest_ms, self.now_ms) < min(slot.end_ms, job.deadline_ms)

    def feasible_slots(self, job: Job) -> tuple[int, ...]:
        candidates = (i for p in sorted(job.providers) for i in self._by_provider.get(p, ()))
        return tuple(sorted(i for i in candidates if self.fits(job, self.slots[i])))

    @cached_property
    def feasible(self) -> dict[str, tuple[int, ...]]:
        """Job id -> the slots it fits, computed once."""
        return {job.id: self.feasible_slots(job) for job in self.jobs}

    @cached_property
    def _by_provider(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(list)
        for index, slot in enumerate(self.slots):
            out[slot.provider].append(index)
        return out

    @property
    def total_tokens(self) -> int:
        return sum(job.tokens for job in self.jobs)


@dataclass(frozen=True, slots=True)
class WindowUse:
    """One slot the plan uses: its budget, forecast, planned jobs and projected utilisation."""

    slot: Slot
    jobs: int
    planned_tokens: int

    @property
    def utilisation(self) -> float:
        """(already used + forecast interactive + planned) / budget."""
        return (self.slot.used + self.slot.forecast + self.planned_tokens) / self.slot.cap


@dataclass(frozen=True)
class Plan:
    method: str  # "milp" or "greedy"
    status: str  # what the solver said (optimal, time limit, fallback reason)
    assignment: dict[str, int]  # job id -> slot index
    overflow: list[str]  # job ids left out
    overflow_tokens: int  # the objective
    windows: list[WindowUse] = field(default_factory=list)
    seconds: float = 0.0


def assemble(problem: Problem, assignment: dict[str, int], method: str, status: str) -> Plan:
    """The plan of an assignment: overflow and the use of every slot holding jobs."""
    tokens: dict[int, int] = defaultdict(int)
    counts: dict[int, int] = defaultdict(int)
    overflow = []
    for job in problem.jobs:
        index = assignment.get(job.id)
        if index is None:
            overflow.append(job)
            continue
        tokens[index] += job.tokens
        counts[index] += 1
    windows = [WindowUse(problem.slots[i], counts[i], tokens[i]) for i in sorted(tokens)]
    overflow_tokens = sum(job.tokens for job in overflow)
    return Plan(method, status, assignment, [job.id for job in overflow], overflow_tokens, windows)
