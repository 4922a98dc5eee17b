"""The planner against brute force on tiny instances, hand-worked cases, and a property test.

Feasibility and the objective are checked here from their definitions, independently
of ``scheduler.problem``: a job runs in a slot of a provider it allows, inside both
the slot and [its earliest start, its deadline), no slot holds more than its budget
net of use and forecast, and overlapping first-use candidates of a provider are never
both used. The objective is the tokens of the jobs left out.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.greedy import solve_greedy
from scheduler.milp import solve_milp
from scheduler.planner import plan
from scheduler.problem import Job, Problem
from scheduler.windows import Slot, slots
from symphony.quotas import QuotaPolicy

H = 3_600_000
MIN = 60_000


def problems_of(assignment: dict[str, int], problem: Problem) -> list[str]:
    out = []
    load = [0] * len(problem.slots)
    for job in problem.jobs:
        if job.id not in assignment:
            continue
        slot = problem.slots[assignment[job.id]]
        load[assignment[job.id]] += job.tokens
        if slot.provider not in job.providers:
            out.append(f"{job.id}: ineligible {slot.provider}")
        if not max(slot.start_ms, job.earliest_ms, problem.now_ms) < min(slot.end_ms, job.deadline_ms):
            out.append(f"{job.id}: outside its slot or past its deadline")
    for i, slot in enumerate(problem.slots):
        if load[i] > max(slot.cap - slot.used - slot.forecast, 0):  # forecast may exceed the cap
            out.append(f"slot {i} over budget")
    opened = [s for i, s in enumerate(problem.slots) if load[i] and s.first_use]
    for a, b in itertools.combinations(opened, 2):
        if a.provider == b.provider and a.start_ms < b.end_ms and b.start_ms < a.end_ms:
            out.append(f"overlapping first-use windows at {a.start_ms} and {b.start_ms}")
    return out


def overflow(problem: Problem, assignment: dict[str, int]) -> int:
    return sum(job.tokens for job in problem.jobs if job.id not in assignment)


def brute_force(problem: Problem) -> int:
    """The least overflow over every assignment (each job to a slot or left out)."""
    best = problem.total_tokens
    choices = range(-1, len(problem.slots))
    for picks in itertools.product(choices, repeat=len(problem.jobs)):
        assignment = {job.id: pick for job, pick in zip(problem.jobs, picks, strict=True) if pick >= 0}
        if not problems_of(assignment, problem):
            best = min(best, overflow(problem, assignment))
    return best


def milp_assignment(problem: Problem) -> dict[str, int]:
    result = solve_milp(problem, time_limit_s=10, quantum=1)
    assert result.assignment is not None and result.status.startswith("optimal")
    return result.assignment


def check_both(problem: Problem) -> tuple[int, int]:
    exact, greedy = milp_assignment(problem), solve_greedy(problem)
    assert problems_of(exact, problem) == []
    assert problems_of(greedy, problem) == []
    return overflow(problem, exact), overflow(problem, greedy)


def test_greedy_is_beaten_where_edf_takes_the_shared_window() -> None:
    # x may use A or B and is due first, so EDF puts it in A (ends first); y only fits A.
    slots_ = [Slot("a", 0, 2 * H, 10), Slot("b", 0, 4 * H, 10)]
    jobs = [Job("x", 6, H, frozenset("ab")), Job("y", 6, 2 * H, frozenset("a"))]
    problem = Problem(0, jobs, slots_)
    assert check_both(problem) == (0, 6)
    assert brute_force(problem) == 0
    best = plan(problem, quantum=1)
    assert (best.method, best.overflow_tokens, best.assignment) == ("milp", 0, {"x": 1, "y": 0})
    assert [(w.planned_tokens, w.utilisation) for w in best.windows] == [(6, 0.6), (6, 0.6)]


def test_deadlines_eligibility_and_budgets_bind() -> None:
    slots_ = [Slot("a", 0, 3 * H, 100, used=20, forecast=30), Slot("b", 3 * H, 6 * H, 100)]
    jobs = [
        Job("late", 10, 3 * H, frozenset("b")),  # b opens at its deadline: cannot run
        Job("early", 10, 6 * H, frozenset("ab"), earliest_ms=3 * H),  # a has closed by its start
        Job("big", 51, 3 * H, frozenset("a")),  # a has 50 left after use and forecast
        Job("fits", 50, 3 * H, frozenset("a")),
        Job("elsewhere", 5, 6 * H, frozenset("c")),  # no window of c
    ]
    problem = Problem(0, jobs, slots_)
    exact = milp_assignment(problem)
    assert exact == {"early": 1, "fits": 0}
    assert solve_greedy(problem) == exact
    assert brute_force(problem) == 10 + 51 + 5


def test_now_is_a_start_bound() -> None:
    problem = Problem(2 * H, [Job("j", 5, 3 * H, frozenset("a"))], [Slot("a", 0, 2 * H, 10)])
    assert milp_assignment(problem) == {} and solve_greedy(problem) == {}


def test_first_use_start_is_chosen_to_split_two_jobs_across_windows() -> None:
    """Two jobs that can each run only in [6h, 7h) and each fill a whole 5h window.

    Opening at 0 gives windows [0, 5h) and [5h, 10h): both jobs need the second, one
    overflows. A first window [1h30, 6h30) takes one (for its last 30 minutes) and the
    next, [6h30, 11h30), the other; on a 30-minute grid no other start splits them
    (1h ends at 6h, 2h puts the boundary at 7h).
    """
    policy = QuotaPolicy.model_validate(
        {
            "version": "t",
            "providers": {
                "anthropic": {"subscription": {"window": "5h", "reset": "first_use", "tokens": 100}}
            },
        }
    )
    jobs = [Job(name, 100, 7 * H, frozenset({"anthropic"}), earliest_ms=6 * H) for name in ("x", "y")]
    problem = Problem(0, jobs, slots(policy, 0))
    best = plan(problem, quantum=1)
    assert best.overflow_tokens == 0 and best.method == "milp"
    starts = sorted(problem.slots[i].start_ms for i in best.assignment.values())
    assert starts == [90 * MIN, 6 * H + 30 * MIN]
    assert problems_of(best.assignment, problem) == []


def test_opening_a_first_use_window_closes_the_candidates_it_overlaps() -> None:
    # Two candidates 1h apart; opening both would double the budget.
    slots_ = [Slot("a", 0, 5 * H, 10, first_use=True), Slot("a", H, 6 * H, 10, first_use=True)]
    jobs = [Job(f"j{i}", 10, 6 * H, frozenset("a")) for i in range(2)]
    problem = Problem(0, jobs, slots_)
    assert check_both(problem) == (10, 10)
    assert brute_force(problem) == 10


def random_problem(rng: random.Random, jobs: int) -> Problem:
    slots_ = []
    for _ in range(3):
        start = rng.randrange(0, 6) * H
        slots_.append(
            Slot(
                rng.choice("ab"),
                start,
                start + rng.randrange(1, 6) * H,
                rng.randrange(0, 25),
                forecast=rng.randrange(0, 5),
                first_use=rng.random() < 0.5,
            )
        )
    job_list = []
    for i in range(jobs):
        earliest = rng.randrange(0, 8) * H
        job_list.append(
            Job(
                f"j{i}",
                rng.randrange(1, 15),
                earliest + rng.randrange(1, 6) * H,
                frozenset(rng.sample("abc", rng.randint(1, 2))),
                earliest,
            )
        )
    return Problem(rng.randrange(0, 2) * H, job_list, slots_)


def test_milp_matches_brute_force_with_eight_jobs() -> None:
    rng = random.Random(15)
    for _ in range(3):
        problem = random_problem(rng, 8)
        exact, greedy = check_both(problem)
        assert exact == brute_force(problem) <= greedy


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 6))
def test_property_milp_is_optimal_and_greedy_no_better(seed: int, jobs: int) -> None:
    problem = random_problem(random.Random(seed), jobs)
    exact, greedy = check_both(problem)
    assert exact == brute_force(problem)
    assert greedy >= exact
    best = plan(problem, quantum=1)
    assert best.overflow_tokens == exact and problems_of(best.assignment, problem) == []


def test_aggregated_model_is_feasible_and_close_to_the_exact_one() -> None:
    rng = random.Random(3)
    for _ in range(5):
        problem = random_problem(rng, 40)
        exact = overflow(problem, milp_assignment(problem))
        result = solve_milp(problem, time_limit_s=10, exact_columns=0)
        assert result.assignment is not None and result.status.startswith("aggregated")
        assert problems_of(result.assignment, problem) == []
        assert (
            exact <= overflow(problem, result.assignment) <= overflow(problem, solve_greedy(problem)) + 14 * 3
        )


def test_quantum_rounds_sizes_up_so_no_window_overruns() -> None:
    problem = Problem(0, [Job(f"j{i}", 1_001, H, frozenset("a")) for i in range(3)], [Slot("a", 0, H, 3_003)])
    assert overflow(problem, milp_assignment(problem)) == 0
    coarse = solve_milp(problem, time_limit_s=10, quantum=1_000).assignment
    assert coarse is not None and len(coarse) == 1  # 2,000 tokens each, budget 3,000
    assert problems_of(coarse, problem) == []


def test_the_milp_fills_the_windows_that_expire_first_so_a_later_plan_has_room() -> None:
    """Four 3h windows of 10 tokens. At 0, four jobs of 5 may use any of them; at 6h four more
    come that may use only the last two. 40 tokens, 40 of budget: nothing need overflow, but
    only if the first plan fills the first two windows (which expire before the second plan).
    Putting the first four in the last two is exactly as good for the first plan alone; the old
    objective did that (HiGHS picked windows 2 and 3), and the second plan overflowed 20 tokens.
    """
    windows = [Slot("a", i * 3 * H, (i + 1) * 3 * H, 10) for i in range(4)]
    first = [Job(f"x{i}", 5, 12 * H, frozenset("a")) for i in range(4)]
    second = [Job(f"y{i}", 5, 12 * H, frozenset("a"), earliest_ms=6 * H) for i in range(4)]
    planned = milp_assignment(Problem(0, first, windows))
    assert problems_of(planned, Problem(0, first, windows)) == []
    # What the dispatcher does next: a job planned into a window that starts before 6h has run there
    # by then; the others still wait, and are planned again with the new ones.
    used = [0] * len(windows)
    waiting = list(second)
    for job in first:
        if windows[planned[job.id]].start_ms < 6 * H:
            used[planned[job.id]] += job.tokens
        else:
            waiting.append(job)
    later = [replace(s, used=used[i]) for i, s in enumerate(windows) if s.end_ms > 6 * H]
    replanned = Problem(6 * H, waiting, later)
    assert overflow(replanned, milp_assignment(replanned)) == 0
    assert used == [10, 10, 0, 0]
