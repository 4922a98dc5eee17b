"""Off-policy evaluation: what a policy that did not serve the traffic would have earned on it.

Each logged decision carries the reward it earned, the probability with which
the logging mixture (champion and challenger, as served) chose its arm, and the
probability the evaluated policy gives that arm in the same context. From these:

- **IPS**: ``mean(w * r)`` with ``w = target / logging``; unbiased, high variance.
- **SNIPS**: ``sum(w * r) / sum(w)``; a little bias, much less variance.
- **DR**: ``mean(q_target + w * (r - q_chosen))``, where ``q`` is a reward model's
  prediction (for the chosen arm, and averaged over the evaluated policy's
  distribution); unbiased when either the propensities or the model are right.

Every estimate comes with a percentile bootstrap interval over decisions and the
effective sample size of its weights, ``(sum w)^2 / sum w^2``.

>>> logged = Logged.of(rewards=[1.0, 0.0], logging=[0.5, 0.5], target=[1.0, 0.0])
>>> ips(logged), snips(logged)
(1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
Estimator = Callable[["Logged"], float]
BOOTSTRAP_RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Logged:
    """Logged decisions as columns (one entry per decision)."""

    rewards: Array
    logging: Array  # the logging mixture's probability of the chosen arm
    target: Array  # the evaluated policy's probability of the chosen arm
    q_chosen: Array  # the reward model's prediction for the chosen arm
    q_target: Array  # the reward model's prediction averaged over the evaluated policy

    @classmethod
    def of(
        cls,
        *,
        rewards: Sequence[float],
        logging: Sequence[float],
        target: Sequence[float],
        q_chosen: Sequence[float] | None = None,
        q_target: Sequence[float] | None = None,
    ) -> Logged:
        n = len(rewards)
        columns = [np.asarray(c, dtype=np.float64) for c in (rewards, logging, target)]
        zeros = np.zeros(n)
        q = [zeros if c is None else np.asarray(c, dtype=np.float64) for c in (q_chosen, q_target)]
        if any(len(c) != n for c in (*columns, *q)):
            raise ValueError("every column needs one entry per decision")
        if n and not np.all(columns[1] > 0):
            raise ValueError("a logging propensity of 0 cannot have been logged")
        return cls(columns[0], columns[1], columns[2], q[0], q[1])

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def weights(self) -> Array:
        return self.target / self.logging

    def take(self, index: NDArray[np.intp]) -> Logged:
        return Logged(*(column[index] for column in self._columns()))

    def _columns(self) -> tuple[Array, ...]:
        return (self.rewards, self.logging, self.target, self.q_chosen, self.q_target)


def ips(logged: Logged) -> float:
    return float(np.mean(logged.weights * logged.rewards))


def snips(logged: Logged) -> float:
    weights = logged.weights
    total = float(np.sum(weights))
    return float(np.sum(weights * logged.rewards)) / total if total > 0 else 0.0


def doubly_robust(logged: Logged) -> float:
    return float(np.mean(logged.q_target + logged.weights * (logged.rewards - logged.q_chosen)))


ESTIMATORS: dict[str, Estimator] = {"ips": ips, "snips": snips, "dr": doubly_robust}


def effective_sample_size(weights: Array) -> float:
    squares = float(np.sum(weights * weights))
    return float(np.sum(weights)) ** 2 / squares if squares > 0 else 0.0


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    samples: int
    effective_samples: float


def resample_indices(n: int, resamples: int, rng: np.random.Generator) -> NDArray[np.intp]:
    """``resamples`` rows of ``n`` indices drawn with replacement: the bootstrap's draws."""
    return rng.integers(0, n, size=(resamples, n))


def percentile_interval(values: Array, level: float = LEVEL) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def estimate(
    logged: Logged,
    estimator: Estimator,
    rng: np.random.Generator,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = LEVEL,
) -> Estimate:
    """The estimator's value on ``logged``, its bootstrap interval and the effective sample size."""
    if len(logged) == 0:
        raise ValueError("no logged decisions to evaluate")
    draws = resample_indices(len(logged), resamples, rng)
    values = np.fromiter((estimator(logged.take(row)) for row in draws), dtype=np.float64, count=resamples)
    low, high = percentile_interval(values, level)
    return Estimate(estimator(logged), low, high, len(logged), effective_sample_size(logged.weights))
