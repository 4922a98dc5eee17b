"""The planner: the MILP under a time limit, the greedy plan as its fallback and floor.

The greedy plan is always computed (it is cheap). The MILP's plan is taken when HiGHS
returns one at least as good; otherwise the greedy plan is, and its status says why.
"""

from __future__ import annotations

from dataclasses import replace

from scheduler.greedy import solve_greedy
from scheduler.milp import solve_milp
from scheduler.problem import Plan, Problem, assemble
from symphony.clock import monotonic

TIME_LIMIT_S = 1.5
QUANTUM = 1_000  # token sizes rounded up to this in the MILP (1: exact)


def plan(problem: Problem, time_limit_s: float = TIME_LIMIT_S, quantum: int = QUANTUM) -> Plan:
    started = monotonic()
    greedy = assemble(problem, solve_greedy(problem), "greedy", "greedy")
    result = solve_milp(problem, time_limit_s, quantum)
    best = greedy
    if result.assignment is None:
        best = replace(greedy, status=f"fallback: MILP {result.status}")
    else:
        milp_plan = assemble(problem, result.assignment, "milp", result.status)
        if milp_plan.overflow_tokens <= greedy.overflow_tokens:
            best = milp_plan
        else:
            best = replace(greedy, status=f"fallback: greedy better than MILP ({result.status})")
    return replace(best, seconds=monotonic() - started)


def plan_greedy(problem: Problem) -> Plan:
    started = monotonic()
    greedy = assemble(problem, solve_greedy(problem), "greedy", "greedy")
    return replace(greedy, seconds=monotonic() - started)
