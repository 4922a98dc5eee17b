"""The proposed champion (the challenger's preferences) and its Markdown policy diff, as reviewers read it."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from learner.policy_diff import propose, render_diff
from symphony.catalog import Policy, PromotionCriteria, UtilityWeights
from symphony.serving import ChallengerPolicy, ChampionPolicy

DAY = 86_400_000

CHAMPION = Policy(
    name="champion",
    version="1",
    temperature=0.1,
    exploration=0.05,
    tasks={"default": {"a/x": 0.7, "b/y": 0.6}, "code": {"a/x": 0.6, "b/y": 0.7, "c/z": 0.5}},
    utility={"default": UtilityWeights(), "code": UtilityWeights(quality=0.8, cost=0.1, latency=0.1)},
    promotion=PromotionCriteria(min_samples=500),
)


def estimate(value: float, low: float, high: float, ess: float) -> dict[str, float]:
    return {"value": value, "low": low, "high": high, "samples": 0, "effective_samples": ess}


def window(start_ms: int, group: str, samples: int, uplift_low: float | None, slo: Any) -> dict[str, Any]:
    return {
        "start_ms": start_ms,
        "group": group,
        "samples": samples,
        "champion": 0.5,
        "ips": estimate(0.6, 0.55, 0.65, 310.4),
        "snips": estimate(0.59, 0.56, 0.62, 310.4),
        "dr": estimate(0.61, 0.58, 0.64, 310.4),
        "uplift_low": uplift_low,
        "slo": slo,
    }


MET = {"p95_ms": 1800.0, "error_rate": 0.004, "breached": False}
REPORT: dict[str, Any] = {
    "as_of_ms": 2 * DAY + 3_600_000,
    "days": 2,
    "champion_version": "1",
    "challenger_version": "ch-9",
    "decisions": 1700,
    "awaiting_feedback": 12,
    "windows": [
        window(DAY, "task:code", 400, 0.125, MET),
        window(DAY, "all", 900, 0.12, MET),
        window(0, "all", 800, 0.11, None),
    ],
    "promotion": {"candidate": True, "reasons": []},
}
# The challenger's weights, as learner.bandit.challenger_tables publishes them (best arm 1).
TABLES = {
    "code": {"a/x": 1.0, "b/y": math.exp(-1.0), "c/z": math.exp(-2.0)},
    "chat": {"a/x": 1.0, "b/y": 1.0},
}

EXPECTED = """\
# Routing policy `champion`: 1 -> 2

- champion: 1 (the version the evidence was gathered against: 1)
- challenger: ch-9
- proposed: 2
- tasks changed: chat, code
- kept from the champion: temperature, exploration, utility, promotion

## Rationale

The learner proposes a challenger when the lower 97.5% bound of its uplift over the champion \
(DR value / champion's on-policy value - 1) is at least +10% on 2 consecutive 24h windows, each \
with at least 500 decisions and within the SLOs (p95 latency at most 5000 ms, error rate at most 2.0%).

Verdict: **promotion candidate**: every condition holds on the latest windows.

Each task's new table reproduces the challenger's weights at the champion's temperature \
(utility = the champion's best utility for the task + temperature * ln(weight / best weight)); \
a task the challenger has no table for keeps the champion's.

## Changes by task

Utilities in [0, 1], served as a softmax of utility / 0.1 with an exploration floor of 0.05. \
Only the arms that change are listed.

### chat (new task; before: the `default` table)

| arm | before | after | change |
| --- | ---: | ---: | ---: |
| b/y | 0.6000 | 0.7000 | +0.1000 |

Top arm: a/x (unchanged). Unchanged arms: 1.

### code

| arm | before | after | change |
| --- | ---: | ---: | ---: |
| a/x | 0.6000 | 0.7000 | +0.1000 |
| b/y | 0.7000 | 0.6000 | -0.1000 |

Top arm: b/y -> a/x. Unchanged arms: 1.

### default

No change. Top arm: a/x (unchanged).

## Evidence

The learner's report as of 1970-01-03 01:00 over the last 2 days: 1700 decisions, 12 awaiting \
feedback. Values are mean utility per decision; intervals are 95% bootstrap intervals; ESS is the \
effective sample size of the importance weights; uplift >= is the one-sided 97.5% lower bound.

| window (UTC) | group | decisions | champion | DR [95% CI] (ESS) | IPS [95% CI] (ESS) \
| SNIPS [95% CI] (ESS) | uplift >= | p95 ms | error rate | SLO |
| --- | --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | --- |
| 1970-01-01 00:00 | all | 800 | 0.5000 | 0.6100 [0.5800, 0.6400] (310) | 0.6000 [0.5500, 0.6500] (310) \
| 0.5900 [0.5600, 0.6200] (310) | +11.0% | - | - | no data |
| 1970-01-02 00:00 | all | 900 | 0.5000 | 0.6100 [0.5800, 0.6400] (310) | 0.6000 [0.5500, 0.6500] (310) \
| 0.5900 [0.5600, 0.6200] (310) | +12.0% | 1800 | 0.40% | met |
| 1970-01-02 00:00 | task:code | 400 | 0.5000 | 0.6100 [0.5800, 0.6400] (310) \
| 0.6000 [0.5500, 0.6500] (310) | 0.5900 [0.5600, 0.6200] (310) | +12.5% | 1800 | 0.40% | met |
"""


def test_the_diff_of_a_small_promotion_reads_as_written_by_hand() -> None:
    proposed = propose(CHAMPION, TABLES, "2")
    assert render_diff(CHAMPION, proposed, REPORT) == EXPECTED


def test_the_diff_does_not_depend_on_the_order_of_its_inputs() -> None:
    rng = random.Random(3)
    for _ in range(5):
        tables = {
            task: dict(rng.sample(sorted(t.items()), len(t)))
            for task, t in rng.sample(sorted(TABLES.items()), 2)
        }
        report = {**REPORT, "windows": rng.sample(REPORT["windows"], len(REPORT["windows"]))}
        assert render_diff(CHAMPION, propose(CHAMPION, tables, "2"), report) == EXPECTED


def test_the_proposed_champion_serves_each_task_what_the_challenger_served() -> None:
    weights = {"a/x": 0.9, "b/y": 0.35, "c/z": 0.05}  # not normalised: any scale per task
    proposed = propose(CHAMPION, {"code": weights}, "2")
    challenger = ChallengerPolicy("ch", {}, tasks={"code": weights}, exploration=CHAMPION.exploration)
    for candidates in [("a/x", "b/y", "c/z"), ("c/z", "b/y"), ("b/y",)]:
        served = ChampionPolicy(proposed).distribution("code", candidates)
        assert served == pytest.approx(challenger.distribution("code", candidates), abs=1e-3)


def test_the_proposal_keeps_the_champions_other_sections_and_untouched_tasks() -> None:
    proposed = propose(CHAMPION, {"code": {"a/x": 1.0, "b/y": 0.0}}, "2")
    assert proposed.version == "2"
    assert (proposed.name, proposed.temperature, proposed.exploration) == ("champion", 0.1, 0.05)
    assert (proposed.utility, proposed.promotion) == (CHAMPION.utility, CHAMPION.promotion)
    assert proposed.tasks["default"] == CHAMPION.tasks["default"]  # no challenger table: kept
    # the best arm keeps the champion's best utility; a zero weight and an arm the challenger
    # does not name get 0 (the challenger served them only the floor)
    assert proposed.tasks["code"] == {"a/x": 0.7, "b/y": 0.0, "c/z": 0.0}
    assert CHAMPION.tasks["code"] == {"a/x": 0.6, "b/y": 0.7, "c/z": 0.5}  # the champion is not changed


def test_a_proposal_refuses_its_champions_version_and_bad_weights() -> None:
    with pytest.raises(ValueError, match="champion's own version"):
        propose(CHAMPION, TABLES, "1")
    with pytest.raises(ValueError, match="finite and non-negative"):
        propose(CHAMPION, {"code": {"a/x": -1.0}}, "2")
    with pytest.raises(ValueError, match="finite and non-negative"):
        propose(CHAMPION, {"code": {"a/x": math.nan}}, "2")


def test_a_verdict_against_promotion_lists_its_reasons_and_a_breach_is_marked() -> None:
    breached = {"p95_ms": 7200.0, "error_rate": 0.031, "breached": True}
    report = {
        **REPORT,
        "windows": [window(DAY, "all", 900, 0.04, breached)],
        "promotion": {"candidate": False, "reasons": ["window 86400000: an SLO was breached"]},
    }
    text = render_diff(CHAMPION, propose(CHAMPION, TABLES, "2"), report)
    assert "Verdict: **not a promotion candidate**:\n- window 86400000: an SLO was breached\n" in text
    assert "| +4.0% | 7200 | 3.10% | **breached** |" in text


def test_a_window_the_champion_served_nothing_in_has_no_uplift_to_show() -> None:
    # The challenger served every request (traffic split 1): the report's bound is -inf, null in JSON.
    report = {**REPORT, "windows": [window(DAY, "all", 900, None, MET)]}
    text = render_diff(CHAMPION, propose(CHAMPION, TABLES, "2"), report)
    assert "| n/a | 1800 | 0.40% | met |" in text
