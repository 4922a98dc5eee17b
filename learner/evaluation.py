"""Off-policy evaluation of a challenger over logged decisions, per 24h event-time window and per task.

Input: decisions as the proxy logged them (candidates, the logging mixture's
probability of each, the chosen arm, which policy served) with their utility
(``learner.utility``), and the challenger as a function from a request's task,
candidates and context to its serving distribution. Decisions an override pinned are left
out: no policy chose them. Output per window and group (``all``, ``task:<name>``):
the champion's on-policy value, the challenger's IPS, SNIPS and DR estimates with
bootstrap intervals and effective sample sizes, and the uplift's lower bound that
the promotion rule reads.

The reward model for DR is the window's mean utility per (task, arm), shrunk
towards the task's mean by ``PRIOR_WEIGHT`` pseudo-decisions, so an arm seen
twice does not dominate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from learner.off_policy import ESTIMATORS, Estimate, Logged, estimate
from learner.promotion import WINDOW_MS, WindowEvidence, uplift_lower_bound

# (task, candidates, context) -> the policy's distribution: ``RoutingPolicy.distribution``.
TargetPolicy = Callable[[str, tuple[str, ...], str], Sequence[float]]
PRIOR_WEIGHT = 5.0


@dataclass(frozen=True)
class LoggedDecision:
    ts: int  # event time, UTC ms
    task: str
    candidates: tuple[str, ...]
    probabilities: tuple[float, ...]  # the logging mixture's, one per candidate
    chosen: str
    policy: str  # champion | challenger | override
    utility: float
    context: str = ""  # ``symphony.serving.context_of`` the decision's logged features


@dataclass(frozen=True)
class GroupReport:
    window_start_ms: int
    group: str
    samples: int
    champion: float  # on-policy mean utility of the champion's decisions
    estimates: dict[str, Estimate]  # ips, snips, dr
    uplift_low: float


RewardModel = dict[tuple[str, str], float]


def reward_model(decisions: Sequence[LoggedDecision]) -> RewardModel:
    """Mean utility per (task, arm), shrunk towards the task's mean."""
    by_task: dict[str, list[float]] = defaultdict(list)
    by_arm: dict[tuple[str, str], list[float]] = defaultdict(list)
    for d in decisions:
        by_task[d.task].append(d.utility)
        by_arm[(d.task, d.chosen)].append(d.utility)
    task_mean = {task: float(np.mean(values)) for task, values in by_task.items()}
    return {
        (task, arm): (sum(values) + PRIOR_WEIGHT * task_mean[task]) / (len(values) + PRIOR_WEIGHT)
        for (task, arm), values in by_arm.items()
    }


def to_logged(decisions: Sequence[LoggedDecision], target: TargetPolicy, model: RewardModel) -> Logged:
    rewards, logging, chosen_target, q_chosen, q_target = [], [], [], [], []
    for d in decisions:
        index = d.candidates.index(d.chosen)
        distribution = target(d.task, d.candidates, d.context)
        q = [model.get((d.task, arm), _task_prior(model, d.task)) for arm in d.candidates]
        rewards.append(d.utility)
        logging.append(d.probabilities[index])
        chosen_target.append(distribution[index])
        q_chosen.append(q[index])
        q_target.append(sum(p * v for p, v in zip(distribution, q, strict=True)))
    return Logged.of(
        rewards=rewards, logging=logging, target=chosen_target, q_chosen=q_chosen, q_target=q_target
    )


def _task_prior(model: RewardModel, task: str) -> float:
    values = [value for (t, _), value in model.items() if t == task]
    return float(np.mean(values)) if values else 0.0


def evaluate_group(
    window_start_ms: int,
    group: str,
    decisions: Sequence[LoggedDecision],
    target: TargetPolicy,
    rng: np.random.Generator,
    *,
    resamples: int,
) -> GroupReport:
    logged = to_logged(decisions, target, reward_model(decisions))
    by_champion = np.array([d.policy == "champion" for d in decisions])
    champion = logged.rewards[by_champion]
    return GroupReport(
        window_start_ms=window_start_ms,
        group=group,
        samples=len(decisions),
        champion=float(np.mean(champion)) if len(champion) else 0.0,
        estimates={name: estimate(logged, fn, rng, resamples=resamples) for name, fn in ESTIMATORS.items()},
        uplift_low=uplift_lower_bound(logged, by_champion, rng, resamples=resamples),
    )


def windows(
    decisions: Iterable[LoggedDecision], window_ms: int = WINDOW_MS
) -> dict[int, list[LoggedDecision]]:
    """Policy-chosen decisions by the start of their event-time window."""
    grouped: dict[int, list[LoggedDecision]] = defaultdict(list)
    for d in decisions:
        if d.policy != "override":
            grouped[d.ts - d.ts % window_ms].append(d)
    return dict(sorted(grouped.items()))


def evaluate(
    decisions: Iterable[LoggedDecision],
    target: TargetPolicy,
    *,
    seed: int = 0,
    resamples: int = 1000,
    window_ms: int = WINDOW_MS,
) -> list[GroupReport]:
    """Every window's report for ``all`` and for each task, in time order."""
    rng = np.random.default_rng(seed)
    reports = []
    for start, window in windows(decisions, window_ms).items():
        reports.append(evaluate_group(start, "all", window, target, rng, resamples=resamples))
        tasks = sorted({d.task for d in window})
        for task in tasks if len(tasks) > 1 else []:
            members = [d for d in window if d.task == task]
            reports.append(evaluate_group(start, f"task:{task}", members, target, rng, resamples=resamples))
    return reports


def evidence(reports: Sequence[GroupReport], slo_breached_windows: set[int]) -> list[WindowEvidence]:
    """What the promotion rule reads: the ``all`` group of each window."""
    return [
        WindowEvidence(
            start_ms=r.window_start_ms,
            champion=r.champion,
            challenger=r.estimates["dr"].value,
            uplift_low=r.uplift_low,
            samples=r.samples,
            slo_breached=r.window_start_ms in slo_breached_windows,
        )
        for r in reports
        if r.group == "all"
    ]
