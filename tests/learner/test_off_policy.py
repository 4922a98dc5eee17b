"""Off-policy estimators and the promotion rule against a world whose truth is known.

The world: tasks drawn with known frequencies, arms with known mean rewards per
task (Bernoulli rewards), a champion and a challenger with known distributions,
and the logging mixture that serves the challenger to a share of traffic. The
expected values are computed here by plain sums over that table, never by the
code under test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from learner.off_policy import Logged, doubly_robust, estimate, ips, snips
from learner.promotion import WINDOW_MS, PromotionRule, WindowEvidence, window_evidence

TASK_SHARE = [0.5, 0.3, 0.2]
MEAN_REWARD = [  # task x arm
    [0.70, 0.55, 0.40, 0.60],
    [0.30, 0.65, 0.50, 0.45],
    [0.50, 0.40, 0.75, 0.35],
]
CHAMPION = [  # task x arm: serving probabilities
    [0.55, 0.15, 0.10, 0.20],
    [0.40, 0.30, 0.15, 0.15],
    [0.40, 0.20, 0.25, 0.15],
]
BETTER = [  # leans towards each task's best arm
    [0.70, 0.10, 0.05, 0.15],
    [0.05, 0.80, 0.10, 0.05],
    [0.10, 0.05, 0.80, 0.05],
]


def true_value(policy: list[list[float]]) -> float:
    return sum(
        share * sum(p * mu for p, mu in zip(probabilities, means, strict=True))
        for share, probabilities, means in zip(TASK_SHARE, policy, MEAN_REWARD, strict=True)
    )


@dataclass
class World:
    challenger: list[list[float]]
    split: float  # the share of traffic the challenger serves

    def log(self, n: int, rng: np.random.Generator, model_bias: float = 0.0) -> tuple[Logged, np.ndarray]:
        """``n`` decisions served by the mixture; also which ones the champion served."""
        tasks = rng.choice(len(TASK_SHARE), size=n, p=TASK_SHARE)
        by_champion = rng.random(n) >= self.split
        champion, challenger = np.array(CHAMPION), np.array(self.challenger)
        serving = np.where(by_champion[:, None], champion[tasks], challenger[tasks])
        arms = np.array([rng.choice(4, p=row) for row in serving])
        mixture = (1 - self.split) * champion[tasks] + self.split * challenger[tasks]
        means = np.array(MEAN_REWARD)[tasks]
        rewards = (rng.random(n) < means[np.arange(n), arms]).astype(float)
        model = np.clip(means + model_bias, 0, 1)  # a reward model, deliberately off by model_bias
        logged = Logged.of(
            rewards=rewards,
            logging=mixture[np.arange(n), arms],
            target=challenger[tasks][np.arange(n), arms],
            q_chosen=model[np.arange(n), arms],
            q_target=np.sum(model * challenger[tasks], axis=1),
        )
        return logged, by_champion


def test_the_true_values_of_the_world() -> None:
    assert true_value(BETTER) / true_value(CHAMPION) - 1 > 0.15


@pytest.mark.parametrize("seed", range(5))
def test_ips_snips_and_dr_land_within_3_percent_of_the_truth(seed: int) -> None:
    rng = np.random.default_rng(seed)
    logged, _ = World(BETTER, split=0.2).log(40_000, rng, model_bias=0.15)
    truth = true_value(BETTER)
    for estimator in (ips, snips, doubly_robust):
        assert abs(estimator(logged) / truth - 1) < 0.03, estimator.__name__


def test_intervals_cover_the_truth_at_about_their_nominal_rate() -> None:
    truth = true_value(BETTER)
    covered = 0
    runs = 200
    for seed in range(runs):
        rng = np.random.default_rng(1000 + seed)
        logged, _ = World(BETTER, split=0.3).log(800, rng, model_bias=0.1)
        result = estimate(logged, doubly_robust, rng, resamples=200)
        covered += result.low <= truth <= result.high
        assert result.samples == 800 and 0 < result.effective_samples <= 800
    assert 0.88 <= covered / runs <= 0.99, covered


def evidence(world: World, start_ms: int, n: int, rng: np.random.Generator) -> WindowEvidence:
    logged, by_champion = world.log(n, rng, model_bias=0.05)
    return window_evidence(start_ms, logged, by_champion, rng, slo_breached=False, resamples=300)


def promoted(world: World, seed: int, n: int) -> bool:
    rng = np.random.default_rng(seed)
    windows = [evidence(world, day * WINDOW_MS, n, rng) for day in range(2)]
    return PromotionRule(min_samples=n).verdict(windows).promotion_candidate


def test_an_equal_challenger_is_almost_never_promoted() -> None:
    aa = World(CHAMPION, split=0.2)
    assert sum(promoted(aa, seed, 3000) for seed in range(20)) <= 1


def test_a_challenger_15_percent_better_is_promoted_in_at_least_9_of_10_seeds() -> None:
    better = World(BETTER, split=0.5)
    assert sum(promoted(better, 100 + seed, 6000) for seed in range(10)) >= 9


def window(start_ms: int, uplift_low: float = 0.12, samples: int = 5000, slo: bool = False) -> WindowEvidence:
    return WindowEvidence(start_ms, 0.5, 0.56, uplift_low, samples, slo)


@pytest.mark.parametrize(
    ("windows", "expected"),
    [
        ([window(0), window(WINDOW_MS)], True),
        ([window(0, 0.09), window(WINDOW_MS)], False),  # one bound under 10%
        ([window(0), window(2 * WINDOW_MS)], False),  # not consecutive
        ([window(0), window(WINDOW_MS, samples=999)], False),  # too few decisions
        ([window(0), window(WINDOW_MS, slo=True)], False),  # an SLO breach
        ([window(WINDOW_MS)], False),  # one window only
        ([window(0, 0.0), window(WINDOW_MS), window(2 * WINDOW_MS)], True),  # only the last two count
    ],
)
def test_the_rule_wants_two_consecutive_confident_healthy_windows(
    windows: list[WindowEvidence], expected: bool
) -> None:
    verdict = PromotionRule(min_uplift=0.10, consecutive_windows=2, min_samples=1000).verdict(windows)
    assert verdict.promotion_candidate is expected
    assert bool(verdict.reasons) is not expected
