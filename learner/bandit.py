"""What the learner knows about each arm, learned online with River, and the challenger it publishes.

``ArmEstimates`` keeps a River running mean of utility per (task, arm): the
bandit's estimates. ``ContextualReward`` is River's online linear regression over
the task and arm one-hot encoded and the request's features, alone and per arm: the reward model a
contextual challenger and the doubly-robust estimator can read. River's bandit
policies pick arms but expose no probabilities, so the challenger's
distribution is built from the estimates with the shared serving code
(``symphony.serving.ChallengerPolicy``): per task, weights ``exp(mean / temperature)``
over the arms seen, an arm seen fewer than ``min_observations`` times weighted as
the task's mean, and ``exploration`` spread evenly as every candidate's floor.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping

import orjson
from river import linear_model, optim, stats

DEFAULT_TEMPERATURE = 0.1
DEFAULT_EXPLORATION = 0.1
MIN_OBSERVATIONS = 20


class ArmEstimates:
    """Running mean utility per task and arm (River ``stats.Mean``)."""

    def __init__(self) -> None:
        self._means: dict[str, dict[str, stats.Mean]] = defaultdict(dict)

    def learn(self, task: str, arm: str, utility: float) -> None:
        self._means[task].setdefault(arm, stats.Mean()).update(utility)

    def mean(self, task: str, arm: str) -> float | None:
        estimate = self._means.get(task, {}).get(arm)
        return None if estimate is None else float(estimate.get())

    def observations(self, task: str, arm: str) -> int:
        estimate = self._means.get(task, {}).get(arm)
        return 0 if estimate is None else int(estimate.n)

    @property
    def tasks(self) -> list[str]:
        return sorted(self._means)

    def arms(self, task: str) -> list[str]:
        return sorted(self._means.get(task, {}))

    def task_mean(self, task: str) -> float:
        means = self._means.get(task, {})
        total = sum(m.n for m in means.values())
        return sum(m.get() * m.n for m in means.values()) / total if total else 0.0


class ContextualReward:
    """Utility predicted from the task, the arm and the request's features (River linear regression)."""

    def __init__(self, learning_rate: float = 0.05) -> None:
        # One-hot and interaction terms are not scaled: a constant 1 would scale to 0 and vanish.
        self._model = linear_model.LinearRegression(
            optimizer=optim.SGD(learning_rate), intercept_lr=learning_rate
        )

    @staticmethod
    def _x(task: str, arm: str, features: Mapping[str, float]) -> dict[str, float]:
        """The task, the arm, both together, and each feature alone and for this arm."""
        x = {f"task={task}": 1.0, f"arm={arm}": 1.0, f"{task}:{arm}": 1.0}
        for name, value in features.items():
            x[name] = value
            x[f"{arm}:{name}"] = value
        return x

    def learn(self, task: str, arm: str, features: Mapping[str, float], utility: float) -> None:
        self._model.learn_one(self._x(task, arm, features), utility)

    def predict(self, task: str, arm: str, features: Mapping[str, float]) -> float:
        return float(self._model.predict_one(self._x(task, arm, features)))  # type: ignore[no-untyped-call]


def challenger_tables(
    estimates: ArmEstimates,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    min_observations: int = MIN_OBSERVATIONS,
) -> dict[str, dict[str, float]]:
    """Per task, a weight per arm seen: ``exp((mean - best) / temperature)`` (scaled so the best is 1)."""
    tables = {}
    for task in estimates.tasks:
        prior = estimates.task_mean(task)
        means = {
            arm: (estimates.mean(task, arm) or 0.0)
            if estimates.observations(task, arm) >= min_observations
            else prior
            for arm in estimates.arms(task)
        }
        best = max(means.values())
        tables[task] = {arm: math.exp((mean - best) / temperature) for arm, mean in means.items()}
    return tables


def contextual_tables(
    by_context: Mapping[str, ArmEstimates], *, min_observations: int = MIN_OBSERVATIONS
) -> dict[str, dict[str, dict[str, float]]]:
    """Per context, ``challenger_tables`` for the tasks where it knows enough: at least two arms
    seen ``min_observations`` times in that context. Elsewhere the task's own table serves."""
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for context, estimates in sorted(by_context.items()):
        known = {
            task
            for task in estimates.tasks
            if sum(estimates.observations(task, arm) >= min_observations for arm in estimates.arms(task)) >= 2
        }
        per_task = challenger_tables(estimates, min_observations=min_observations)
        if known:
            tables[context] = {task: per_task[task] for task in sorted(known)}
    return tables


def challenger_json(
    version: str,
    tables: Mapping[str, Mapping[str, float]],
    *,
    contexts: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    exploration: float = DEFAULT_EXPLORATION,
) -> bytes:
    """What the learner publishes at ``symphony.serving.CHALLENGER_KEY``: per task, and per task in
    each context (``contexts`` is context -> task -> table; published as task -> context -> table)."""
    by_task: dict[str, dict[str, Mapping[str, float]]] = {}
    for context, per_task in (contexts or {}).items():
        for task, table in per_task.items():
            by_task.setdefault(task, {})[context] = table
    return orjson.dumps(
        {"version": version, "weights": {}, "tasks": tables, "contexts": by_task, "exploration": exploration},
        option=orjson.OPT_SORT_KEYS,
    )
