"""The learner's River estimates and the challenger built from them, against a world with known means."""

from __future__ import annotations

import math
import random

import pytest

from learner.bandit import ArmEstimates, ContextualReward, challenger_json, challenger_tables
from symphony.serving import ChallengerPolicy

MEANS = {"chat": {"a/1": 0.8, "b/2": 0.5, "c/3": 0.3}, "code": {"a/1": 0.4, "b/2": 0.9, "c/3": 0.6}}


def trained(n: int, seed: int = 0) -> ArmEstimates:
    rng = random.Random(seed)
    estimates = ArmEstimates()
    for _ in range(n):
        task = rng.choice(sorted(MEANS))
        arm = rng.choice(sorted(MEANS[task]))
        estimates.learn(task, arm, float(rng.random() < MEANS[task][arm]))
    return estimates


def test_the_running_means_converge_to_the_true_means() -> None:
    estimates = trained(30_000)
    for task, arms in MEANS.items():
        for arm, mean in arms.items():
            assert estimates.mean(task, arm) == pytest.approx(mean, abs=0.03)
            assert estimates.observations(task, arm) > 4000


def test_the_challenger_serves_softmax_of_the_estimates_with_a_floor_through_the_shared_code() -> None:
    estimates = trained(30_000)
    raw = challenger_json("v7", challenger_tables(estimates, temperature=0.1), exploration=0.1)
    policy = ChallengerPolicy.from_json(raw)
    assert policy.version == "v7"
    arms = ("a/1", "b/2", "c/3")
    for task in MEANS:
        weights = [math.exp((estimates.mean(task, arm) or 0.0) / 0.1) for arm in arms]
        expected = [0.9 * w / sum(weights) + 0.1 / 3 for w in weights]
        assert policy.distribution(task, arms) == pytest.approx(expected)
    assert policy.distribution("chat", arms)[0] > 0.7  # the best arm of each task leads
    assert policy.distribution("code", arms)[1] > 0.7


def test_arms_seen_too_rarely_count_as_their_tasks_mean() -> None:
    estimates = ArmEstimates()
    for _ in range(30):
        estimates.learn("chat", "a/1", 0.6)
    estimates.learn("chat", "b/2", 1.0)  # one lucky answer is no evidence
    tables = challenger_tables(estimates, temperature=0.1, min_observations=20)
    task_mean = (30 * 0.6 + 1.0) / 31  # b/2 counts as this, a little above a/1's 0.6
    assert tables["chat"]["b/2"] == pytest.approx(1.0)
    assert tables["chat"]["a/1"] == pytest.approx(math.exp((0.6 - task_mean) / 0.1))


def test_the_contextual_model_learns_that_features_matter() -> None:
    rng = random.Random(3)
    model = ContextualReward()
    for _ in range(5000):
        long_prompt = rng.random()
        arm = rng.choice(["a/1", "b/2"])
        # a/1 gets worse as prompts grow; b/2 does not
        utility = 0.9 - 0.6 * long_prompt if arm == "a/1" else 0.6
        model.learn("chat", arm, {"prompt_length": long_prompt}, utility)
    assert model.predict("chat", "a/1", {"prompt_length": 0.0}) > model.predict(
        "chat", "b/2", {"prompt_length": 0.0}
    )
    assert model.predict("chat", "a/1", {"prompt_length": 1.0}) < model.predict(
        "chat", "b/2", {"prompt_length": 1.0}
    )
