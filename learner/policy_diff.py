"""The champion a promotion proposes, and the policy diff a reviewer reads in its pull request.

``propose`` builds the new champion from the challenger's per-task weight tables
(what the learner publishes at ``symphony.serving.CHALLENGER_KEY``, from
``learner.bandit.challenger_tables``). The champion file holds utilities served as
a softmax of ``utility / temperature``, and a softmax ignores a constant added to
every arm of a task, so each task's new table is

    utility(arm) = anchor + temperature * ln(weight(arm) / max weight)

rounded to 4 decimals and clamped to [0, 1], where ``anchor`` is the champion's
best utility for that task (its ``default`` table's for a new task). Served at the
champion's temperature, the table gives each task the challenger's distribution; the
champion's ``exploration`` floor, ``utility`` weights and ``promotion`` criteria are
kept. An arm the champion names but the challenger's table does not gets 0 (the
challenger served it only its floor). A task the challenger has no table for keeps
the champion's table: the challenger served it uniformly, and its evidence says
nothing about it.

``render_diff`` writes the Markdown diff: the versions, the rationale (the
promotion criteria and the learner's verdict), per task the arms that change
(before, after, change) and the top arm, and the evidence from the learner's
report (``GET /learner/metrics``, ``dataflows.learner_report``): each window's
DR / IPS / SNIPS estimates with 95% intervals and effective sample sizes, the
uplift's lower bound, sample sizes and SLOs. The output depends only on its
inputs and is sorted, so the same promotion always renders the same text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from learner.promotion import uplift_text
from symphony.catalog import Policy

DECIMALS = 4
ESTIMATORS = ("dr", "ips", "snips")


def propose(champion: Policy, challenger_tables: Mapping[str, Mapping[str, float]], version: str) -> Policy:
    """The champion's successor ``version``: the challenger's preferences as utility tables.

    ``challenger_tables`` is task -> arm -> non-negative weight, any scale per task.
    """
    if version == champion.version:
        raise ValueError(f"the proposed version {version} is the champion's own version")
    tasks = {task: dict(table) for task, table in champion.tasks.items()}
    for task, weights in challenger_tables.items():
        if any(not (math.isfinite(w) and w >= 0) for w in weights.values()):
            raise ValueError(f"challenger table for task {task}: weights must be finite and non-negative")
        best_weight = max(weights.values(), default=0.0)
        if best_weight <= 0:
            continue  # an empty or all-zero table serves uniformly: nothing to learn from
        before = champion.utilities(task)
        anchor = max(before.values(), default=1.0)
        table = {arm: 0.0 for arm in before}
        for arm, weight in weights.items():
            utility = anchor + champion.temperature * math.log(weight / best_weight) if weight > 0 else 0.0
            table[arm] = round(min(max(utility, 0.0), 1.0), DECIMALS)
        tasks[task] = table
    return champion.model_copy(update={"version": version, "tasks": tasks})


@dataclass(frozen=True)
class ArmChange:
    arm: str
    before: float | None  # None: the task's table did not name the arm
    after: float | None


@dataclass(frozen=True)
class TaskChange:
    task: str
    new: bool  # the champion had no table of its own for the task
    changes: list[ArmChange]  # changed arms only, sorted by arm
    unchanged: int
    top_before: str
    top_after: str


def task_changes(champion: Policy, proposed: Policy) -> list[TaskChange]:
    """Every task of either policy, sorted by name; a task without its own table reads ``default``."""
    result = []
    for task in sorted(set(champion.tasks) | set(proposed.tasks)):
        before = champion.utilities(task)
        after = proposed.utilities(task)
        changes = [
            ArmChange(arm, before.get(arm), after.get(arm))
            for arm in sorted(set(before) | set(after))
            if before.get(arm) != after.get(arm)
        ]
        result.append(
            TaskChange(
                task=task,
                new=task not in champion.tasks,
                changes=changes,
                unchanged=len(set(before) | set(after)) - len(changes),
                top_before=_top(before),
                top_after=_top(after),
            )
        )
    return result


def _top(table: Mapping[str, float]) -> str:
    """The arm with the highest utility (ties broken by name), or ``-`` for an empty table."""
    return min(table, key=lambda arm: (-table[arm], arm)) if table else "-"


def render_diff(champion: Policy, proposed: Policy, report: Mapping[str, Any]) -> str:
    """The Markdown policy diff; ``report`` is the learner's report (``GET /learner/metrics``)."""
    changes = task_changes(champion, proposed)
    lines = [
        f"# Routing policy `{proposed.name}`: {champion.version} -> {proposed.version}",
        "",
        *_summary(champion, proposed, report),
        "",
        "## Rationale",
        "",
        *_rationale(champion, report),
        "",
        "## Changes by task",
        "",
        f"Utilities in [0, 1], served as a softmax of utility / {proposed.temperature:g} with an"
        f" exploration floor of {proposed.exploration:g}. Only the arms that change are listed.",
    ]
    for change in changes:
        lines += ["", *_task_section(change)]
    lines += ["", "## Evidence", "", *_evidence(report)]
    return "\n".join(lines) + "\n"


def _summary(champion: Policy, proposed: Policy, report: Mapping[str, Any]) -> list[str]:
    changed = [c.task for c in task_changes(champion, proposed) if c.changes]
    kept = [
        name
        for name in ("temperature", "exploration", "utility", "promotion")
        if getattr(champion, name) == getattr(proposed, name)
    ]
    lines = [
        f"- champion: {champion.version} (the version the evidence was gathered against:"
        f" {report.get('champion_version', '?')})",
        f"- challenger: {report.get('challenger_version', '?')}",
        f"- proposed: {proposed.version}",
        f"- tasks changed: {', '.join(changed) if changed else 'none'}",
        f"- kept from the champion: {', '.join(kept) if kept else 'nothing'}",
    ]
    return lines


def _rationale(champion: Policy, report: Mapping[str, Any]) -> list[str]:
    criteria = champion.promotion
    promotion = report.get("promotion") or {}
    lines = [
        "The learner proposes a challenger when the lower 97.5% bound of its uplift over the"
        f" champion (DR value / champion's on-policy value - 1) is at least {criteria.min_uplift:+.0%}"
        f" on {criteria.consecutive_windows} consecutive 24h windows, each with at least"
        f" {criteria.min_samples} decisions and within the SLOs (p95 latency at most"
        f" {criteria.slo_p95_ms:g} ms, error rate at most {criteria.slo_error_rate:.1%}).",
        "",
    ]
    if promotion.get("candidate"):
        lines.append("Verdict: **promotion candidate**: every condition holds on the latest windows.")
    else:
        lines.append("Verdict: **not a promotion candidate**:")
        lines += [f"- {reason}" for reason in promotion.get("reasons") or ["no verdict in the report"]]
    lines += [
        "",
        "Each task's new table reproduces the challenger's weights at the champion's temperature"
        " (utility = the champion's best utility for the task + temperature * ln(weight / best weight));"
        " a task the challenger has no table for keeps the champion's.",
    ]
    return lines


def _task_section(change: TaskChange) -> list[str]:
    title = f"### {change.task}" + (" (new task; before: the `default` table)" if change.new else "")
    top = (
        f"Top arm: {change.top_before} (unchanged)."
        if change.top_before == change.top_after
        else f"Top arm: {change.top_before} -> {change.top_after}."
    )
    if not change.changes:
        return [title, "", f"No change. {top}"]
    lines = [title, "", "| arm | before | after | change |", "| --- | ---: | ---: | ---: |"]
    for arm in change.changes:
        before, after = _utility(arm.before), _utility(arm.after)
        lines.append(f"| {arm.arm} | {before} | {after} | {_delta(arm.before, arm.after)} |")
    lines += ["", f"{top} Unchanged arms: {change.unchanged}."]
    return lines


def _utility(value: float | None) -> str:
    return "-" if value is None else f"{value:.{DECIMALS}f}"


def _delta(before: float | None, after: float | None) -> str:
    if before is None:
        return "added"
    if after is None:
        return "removed"
    return f"{after - before:+.{DECIMALS}f}"


def _evidence(report: Mapping[str, Any]) -> list[str]:
    lines = [
        f"The learner's report as of {_when(report.get('as_of_ms'))} over the last"
        f" {report.get('days', '?')} days: {report.get('decisions', '?')} decisions,"
        f" {report.get('awaiting_feedback', '?')} awaiting feedback. Values are mean utility per"
        " decision; intervals are 95% bootstrap intervals; ESS is the effective sample size of"
        " the importance weights; uplift >= is the one-sided 97.5% lower bound.",
        "",
    ]
    windows: Sequence[Mapping[str, Any]] = report.get("windows") or []
    if not windows:
        return [*lines, "No window in the report."]
    lines += [
        "| window (UTC) | group | decisions | champion | DR [95% CI] (ESS) | IPS [95% CI] (ESS)"
        " | SNIPS [95% CI] (ESS) | uplift >= | p95 ms | error rate | SLO |",
        "| --- | --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    ordered = sorted(windows, key=lambda w: (int(w["start_ms"]), w["group"] != "all", str(w["group"])))
    for window in ordered:
        slo = window.get("slo")
        estimates = " | ".join(_estimate(window[name]) for name in ESTIMATORS)
        lines.append(
            f"| {_when(window['start_ms'])} | {window['group']} | {window['samples']}"
            f" | {window['champion']:.4f} | {estimates} | {uplift_text(window['uplift_low'])} | "
            + (
                "- | - | no data |"
                if slo is None
                else f"{slo['p95_ms']:.0f} | {slo['error_rate']:.2%} |"
                f" {'**breached**' if slo['breached'] else 'met'} |"
            )
        )
    return lines


def _estimate(estimate: Mapping[str, Any]) -> str:
    return (
        f"{estimate['value']:.4f} [{estimate['low']:.4f}, {estimate['high']:.4f}]"
        f" ({estimate['effective_samples']:.0f})"
    )


def _when(ms: Any) -> str:
    if not isinstance(ms, int):
        return "?"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
