"""Windowed off-policy evaluation over decisions logged as the proxy logs them, in a world with known truth.

Decisions are drawn the way the proxy serves them (champion or challenger by the
traffic split, the chosen arm's mixture probability logged); the truth is the
plain sum over the world's table (``tests/learner/test_off_policy.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from learner.evaluation import LoggedDecision, evaluate, evidence, reward_model, to_logged, windows
from learner.promotion import WINDOW_MS, PromotionRule
from symphony.serving import ChallengerPolicy
from tests.learner.test_off_policy import BETTER, CHAMPION, MEAN_REWARD, TASK_SHARE, true_value

TASKS = ("chat", "code", "search")
ARMS = ("a/1", "b/2", "c/3", "d/4")
SPLIT = 0.3


def table_policy(table: list[list[float]]):  # type: ignore[no-untyped-def]
    def distribution(task: str, candidates: tuple[str, ...], context: str = "") -> list[float]:
        row = table[TASKS.index(task)]
        return [row[ARMS.index(arm)] for arm in candidates]

    return distribution


def logged_day(
    day: int, n: int, rng: np.random.Generator, challenger: list[list[float]]
) -> list[LoggedDecision]:
    decisions = []
    for i in range(n):
        t = int(rng.choice(3, p=TASK_SHARE))
        by_challenger = rng.random() < SPLIT
        serving = challenger[t] if by_challenger else CHAMPION[t]
        mixture = [(1 - SPLIT) * c + SPLIT * x for c, x in zip(CHAMPION[t], challenger[t], strict=True)]
        a = int(rng.choice(4, p=serving))
        utility = float(rng.random() < MEAN_REWARD[t][a])
        decisions.append(
            LoggedDecision(
                ts=day * WINDOW_MS + i,
                task=TASKS[t],
                candidates=ARMS,
                probabilities=tuple(mixture),
                chosen=ARMS[a],
                policy="challenger" if by_challenger else "champion",
                utility=utility,
            )
        )
    return decisions


def test_each_window_estimates_the_challenger_within_3_percent_and_promotes_a_better_one() -> None:
    rng = np.random.default_rng(7)
    decisions = logged_day(0, 15_000, rng, BETTER) + logged_day(1, 15_000, rng, BETTER)
    reports = evaluate(decisions, table_policy(BETTER), seed=1, resamples=200)
    overall = [r for r in reports if r.group == "all"]
    assert [r.window_start_ms for r in overall] == [0, WINDOW_MS]
    for report in overall:
        for name in ("ips", "snips", "dr"):
            assert abs(report.estimates[name].value / true_value(BETTER) - 1) < 0.03, name
        assert abs(report.champion / true_value(CHAMPION) - 1) < 0.03
    assert {r.group for r in reports} == {"all", "task:chat", "task:code", "task:search"}
    assert PromotionRule(min_samples=10_000).verdict(evidence(reports, set())).promotion_candidate
    assert not PromotionRule(min_samples=10_000).verdict(evidence(reports, {WINDOW_MS})).promotion_candidate


def test_overrides_are_left_out_and_windows_follow_event_time() -> None:
    base = LoggedDecision(5, "chat", ARMS, (0.25,) * 4, "a/1", "champion", 1.0)
    pinned = LoggedDecision(6, "chat", ARMS, (1.0, 0, 0, 0), "a/1", "override", 0.0)
    late = LoggedDecision(WINDOW_MS + 1, "chat", ARMS, (0.25,) * 4, "b/2", "challenger", 0.0)
    assert windows([late, pinned, base]) == {0: [base], WINDOW_MS: [late]}


def test_the_reward_model_shrinks_rare_arms_towards_their_task() -> None:
    seen_once = LoggedDecision(1, "chat", ARMS, (0.25,) * 4, "a/1", "champion", 1.0)
    others = [LoggedDecision(2, "chat", ARMS, (0.25,) * 4, "b/2", "champion", 0.0)] * 9
    model = reward_model([seen_once, *others])
    # task mean 0.1; a/1: (1 + 5 * 0.1) / (1 + 5); b/2: (0 + 5 * 0.1) / (9 + 5)
    assert model[("chat", "a/1")] == pytest.approx(1.5 / 6)
    assert model[("chat", "b/2")] == pytest.approx(0.5 / 14)


def test_a_contextual_challenger_is_evaluated_in_each_decisions_context() -> None:
    """A challenger that sends short prompts to a/1 and long ones to b/2 is worth what those arms earned
    in those contexts: IPS by hand, each decision weighted by the target's probability in its context."""
    sized = ChallengerPolicy("v", {}, contexts={"chat": {"short": {"a/1": 1.0}, "long": {"b/2": 1.0}}})
    decisions = [
        LoggedDecision(1, "chat", ARMS, (0.25,) * 4, "a/1", "champion", 0.9, context="short"),
        LoggedDecision(2, "chat", ARMS, (0.25,) * 4, "a/1", "champion", 0.2, context="long"),
        LoggedDecision(3, "chat", ARMS, (0.25,) * 4, "b/2", "champion", 0.8, context="long"),
        LoggedDecision(4, "chat", ARMS, (0.25,) * 4, "c/3", "champion", 0.5, context="short"),
    ]
    logged = to_logged(decisions, sized.distribution, reward_model(decisions))
    assert list(logged.target) == [1.0, 0.0, 1.0, 0.0]
    assert float(np.mean(logged.rewards * logged.target / logged.logging)) == pytest.approx(
        (0.9 + 0.8) * 4 / 4
    )
