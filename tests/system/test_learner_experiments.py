"""The learner's must-shows through the whole stack: proxy, simulator, engine, learner and report.

Each is `symphony learner-week` with a simulated clock (one 24h window per 30 s or so of real time),
traffic through the proxy and feedback from the simulator's ground truth. They take minutes each
(about 35 in all on 2 cores), so they run by hand:
`just test -m by_hand tests/system/test_learner_experiments.py -s`.
Each prints its figures.

- OPE accuracy: a fixed challenger, frozen, serves 30% of the traffic for six days, then all of it
  for four; each off-policy day's IPS and DR estimates of its value must fall within 3% of its value
  measured on-policy (the mean utility of the days it served alone), and the intervals' coverage is
  printed.
- Power: in the `champion-wrong` world a policy more than 15% better is reachable; from a fresh stack
  the learner must find it and be a promotion candidate after two windows in at least 9 of 10 seeds.
- Safety: an A/A run, the challenger the champion's twin (`--challenger champion`), 40 days; of the 20
  disjoint pairs of windows the promotion rule passes at most one.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from learner.promotion import PromotionRule, WindowEvidence
from symphony.catalog import load_catalog, load_policy

ROOT = Path(__file__).parents[2]
POLICY = load_policy(ROOT / "policies" / "champion.json", load_catalog())
RULE = PromotionRule(
    POLICY.promotion.min_uplift, POLICY.promotion.consecutive_windows, POLICY.promotion.min_samples
)
# A fixed challenger for the OPE test: unlike the champion, it prefers the arms the truth ranks high.
FIXED = {
    "version": "fixed-ope",
    "weights": {"openai/gpt-4o": 1.0, "anthropic/claude-sonnet-4-5": 1.0, "openai/gpt-4o-mini": 0.5},
    "tasks": {
        "reasoning": {"grok/grok-3-mini": 1.0, "deepseek/deepseek-chat": 0.6, "openai/gpt-4o": 0.3},
        "extract": {"deepseek/deepseek-chat": 1.0, "grok/grok-3-mini": 0.5, "openai/gpt-4o-mini": 0.3},
        "chat": {"openai/gpt-4o": 1.0, "anthropic/claude-sonnet-4-5": 0.7, "openai/gpt-4o-mini": 0.4},
    },
    "exploration": 0.1,
}

pytestmark = [pytest.mark.by_hand, pytest.mark.timeout(3600)]  # minutes each, by design


def week(tmp_path: Path, *args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "cli", "learner-week", "--feedback-share", "1", "--json", *args]
    command += ["--var-dir", str(tmp_path / "var")]
    ran = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    # 1 is also "not a promotion candidate", with the run on stdout
    assert ran.returncode in (0, 1) and ran.stdout.startswith("{"), ran.stderr[-3000:]
    run: dict[str, Any] = json.loads(ran.stdout)
    return run


def overall(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's `all` windows that ended, oldest first."""
    return [w for w in run["report"]["windows"] if w["group"] == "all" and w["ended"]]


def evidence(window: dict[str, Any]) -> WindowEvidence:
    return WindowEvidence(
        start_ms=window["start_ms"],
        champion=window["champion"],
        challenger=window["dr"]["value"],
        uplift_low=window["uplift_low"],
        samples=window["samples"],
        slo_breached=bool(window["slo"] and window["slo"]["breached"]),
    )


def test_ope_estimates_a_frozen_challenger_within_3_percent_of_its_on_policy_value(tmp_path: Path) -> None:
    challenger = tmp_path / "fixed.json"
    challenger.write_text(json.dumps(FIXED))
    run = week(
        tmp_path,
        *("--days", "11", "--minutes", "5.5", "--rate", "80", "--challenger", str(challenger)),
        *("--traffic-split", "0.3", "--on-policy-from-day", "6"),
    )
    days = overall(run)
    assert len(days) == 11
    # Day 0 may start before every replica read the challenger, day 6 holds the switch: both left out.
    off_policy, on_policy = days[1:6], days[7:11]
    for day in on_policy:  # served by the challenger alone: every weight 1, IPS is the plain mean
        assert day["ips"]["effective_samples"] == pytest.approx(day["samples"], rel=1e-6)
    value = sum(d["ips"]["value"] * d["samples"] for d in on_policy) / sum(d["samples"] for d in on_policy)
    print(f"\non-policy value of the frozen challenger: {value:.4f} over {len(on_policy)} days")
    covered = {"ips": 0, "dr": 0}
    for day in off_policy:
        line = [f"day {days.index(day)}: n {day['samples']}"]
        for name in covered:
            estimate = day[name]
            error = estimate["value"] / value - 1
            covered[name] += estimate["low"] <= value <= estimate["high"]
            ess = estimate["effective_samples"]
            line.append(f"{name} {estimate['value']:.4f} ({error:+.2%}, ESS {ess:.0f})")
            assert abs(error) <= 0.03, line
        print(", ".join(line))
    print(f"95% intervals covering the on-policy value: IPS {covered['ips']}/5, DR {covered['dr']}/5")
    assert covered["ips"] >= 3 and covered["dr"] >= 3


def test_a_policy_more_than_15_percent_better_is_promoted_after_two_windows_in_9_of_10_seeds(
    tmp_path: Path,
) -> None:
    promoted = 0
    for seed in range(10):
        run = week(tmp_path / str(seed), "--days", "2", "--minutes", "1", "--rate", "45", "--seed", str(seed))
        days = overall(run)
        uplift = ", ".join(f"{d['dr']['value'] / d['champion'] - 1:+.1%}" for d in days)
        lows = ", ".join(f"{d['uplift_low']:+.1%}" for d in days)
        candidate = run["report"]["promotion"]["candidate"]
        promoted += candidate
        why = "; ".join(run["report"]["promotion"]["reasons"])
        print(f"seed {seed}: DR uplift {uplift}; lower bounds {lows}; candidate {candidate} {why}")
    print(f"promoted in {promoted} of 10 seeds")
    assert promoted >= 9


def test_an_aa_run_promotes_at_most_once_in_20_seeds(tmp_path: Path) -> None:
    run = week(
        tmp_path,
        *("--days", "40", "--minutes", "12", "--rate", "65", "--scenario", "built-in"),
        *("--challenger", "champion", "--traffic-split", "0.5"),
    )
    days = overall(run)
    assert len(days) == 40 and all(d["samples"] >= RULE.min_samples for d in days)
    seeds = [RULE.verdict([evidence(days[2 * k]), evidence(days[2 * k + 1])]) for k in range(20)]
    looks = [RULE.verdict([evidence(a), evidence(b)]) for a, b in itertools.pairwise(days)]
    lows = sorted(d["uplift_low"] for d in days)
    print(
        f"\nA/A, 40 days: uplift lower bounds from {lows[0]:+.1%} to {lows[-1]:+.1%}; promotions in "
        f"{sum(v.promotion_candidate for v in seeds)} of 20 disjoint pairs, "
        f"{sum(v.promotion_candidate for v in looks)} of {len(looks)} daily looks"
    )
    assert sum(v.promotion_candidate for v in seeds) <= 1
