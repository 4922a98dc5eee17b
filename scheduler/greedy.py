"""The fast fallback: earliest deadline first, each job into the earliest-ending slot with room.

First-use candidates are opened as a chain, per provider: the earliest candidate some
job fits, then the earliest one after it closes that some job fits, and so on. Jobs
are taken by deadline (larger first on a tie), and each goes into the open slot it
fits that ends first (windows that expire first are filled first; most room left on
a tie). A job no slot has room for overflows.
"""

from __future__ import annotations

from collections.abc import Iterable

from scheduler.problem import Job, Problem


def solve_greedy(problem: Problem) -> dict[str, int]:
    remaining = {slot: problem.slots[slot].available for slot in _open_slots(problem)}
    assignment: dict[str, int] = {}
    fill(problem, problem.jobs, remaining, assignment)
    return assignment


def fill(
    problem: Problem, jobs: Iterable[Job], remaining: dict[int, int], assignment: dict[str, int]
) -> None:
    """Place ``jobs`` earliest deadline first into the slots of ``remaining`` (tokens left), in place."""
    for job in sorted(jobs, key=lambda job: (job.deadline_ms, -job.tokens)):
        room = [slot for slot in problem.feasible[job.id] if remaining.get(slot, -1) >= job.tokens]
        if room:
            best = min(room, key=lambda slot: (problem.slots[slot].end_ms, -remaining[slot]))
            remaining[best] -= job.tokens
            assignment[job.id] = best


def _open_slots(problem: Problem) -> set[int]:
    useful = {slot for slots in problem.feasible.values() for slot in slots}
    opened = {slot for slot in useful if not problem.slots[slot].first_use}
    candidates = [slot for slot in useful if problem.slots[slot].first_use]
    candidates.sort(key=lambda slot: problem.slots[slot].start_ms)
    last_end: dict[str, int] = {}
    for slot in candidates:
        candidate = problem.slots[slot]
        if candidate.start_ms >= last_end.get(candidate.provider, candidate.start_ms):
            opened.add(slot)
            last_end[candidate.provider] = candidate.end_ms
    return opened
