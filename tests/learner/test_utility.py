"""Utility per decision, against values worked out by hand from the formula in the policy file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from learner.utility import Outcome, utility
from symphony.catalog import UtilityWeights, load_catalog, load_policy

WEIGHTS = UtilityWeights(quality=0.6, cost=0.3, latency=0.1, cost_scale_usd=0.01, latency_scale_s=10.0)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        # 0.6 * 0.5 + 0.3 * (1 - 0.002 / 0.01) + 0.1 * (1 - 2 / 10) = 0.3 + 0.24 + 0.08
        (Outcome(True, 0.5, 0.002, 2000.0), 0.62),
        # cost and latency past their scales count as nothing
        (Outcome(True, 1.0, 0.05, 30_000.0), 0.6),
        (Outcome(True, 0.0, 0.0, 0.0), 0.4),
        (Outcome(False, 1.0, 0.0, 10.0), 0.0),  # failed: worth nothing even with a score
        (Outcome(True, None, 0.001, 100.0), None),  # no feedback yet
    ],
)
def test_utility_follows_the_formula(outcome: Outcome, expected: float | None) -> None:
    value = utility(WEIGHTS, outcome)
    assert value == (None if expected is None else pytest.approx(expected))


def test_weights_must_sum_to_one() -> None:
    with pytest.raises(ValidationError, match="sum to 1"):
        UtilityWeights(quality=0.5, cost=0.3, latency=0.1)


def test_the_champion_file_has_weights_for_every_task_it_routes() -> None:
    policy = load_policy(Path(__file__).parents[2] / "policies" / "champion.json", load_catalog())
    for task in policy.tasks:
        weights = policy.utility_weights(task)
        assert weights.quality + weights.cost + weights.latency == pytest.approx(1.0)
    assert policy.utility_weights("code").quality > policy.utility_weights("summarise").quality
