"""`symphony learner-week` as an operator runs it: a stack of its own, traffic, the learner, its report and
the promotion, on a shortened week (2 simulated days in 30 s of traffic).

The simulator's truth is the `champion-wrong` scenario, so the test knows the answer without asking the
code under test: for reasoning and extract the best arms are grok/grok-3-mini and deepseek/deepseek-chat
(`simulator.truth.CHAMPION_WRONG`), which the champion's `default` table ranks low. The shortened week has
fewer decisions per window than the shipped champion asks (1,000), so it runs with a copy of the champion
whose only change is `min_samples`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.truth import CHAMPION_WRONG
from tests.github_standin import Remote, git

ROOT = Path(__file__).parents[2]
MIN_SAMPLES = 300
WRONG_TASKS = set(CHAMPION_WRONG)


def best_arms(task: str) -> set[str]:
    quality = CHAMPION_WRONG[task]
    top = max(quality.values())
    return {arm for arm, q in quality.items() if q >= top - 0.05}


def week(repo: Remote, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    champion = json.loads((ROOT / "policies" / "champion.json").read_text())
    champion["promotion"]["min_samples"] = MIN_SAMPLES
    policy = tmp_path / "champion-short-week.json"
    policy.write_text(json.dumps(champion))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")},
        "POLICY_FILE": str(policy),
        "QUOTA_POLICY_FILE": str(ROOT / "policies" / "quotas.v1.json"),
    }
    # A minute of traffic, not the least allowed (half): the stack's start-up runs on the simulated clock
    # too and eats the first window's head (at 5,760x, 8 s of a busy machine's start-up was 13 h, leaving
    # that window fewer than MIN_SAMPLES decisions); at 2,880x with twice the requests it holds > 300 for
    # any start-up under about 20 s.
    command = [sys.executable, "-m", "cli", "learner-week", "--days", "2", "--minutes", "1", "--rate", "40"]
    command += ["--resamples", "300", "--var-dir", str(tmp_path / "var"), "--version", "2026-12-01.9", *args]
    return subprocess.run(command, cwd=repo.work, env=env, capture_output=True, text=True, timeout=300)


def test_a_short_week_finds_where_the_champion_is_wrong_and_commits_the_truths_best_arms(
    repo: Remote, tmp_path: Path
) -> None:
    ran = week(repo, tmp_path, "--promote", "--json")
    assert ran.stdout.startswith("{"), ran.stderr[-3000:]
    run: dict[str, Any] = json.loads(ran.stdout)
    assert (repo.work / "runs" / "learner-week.json").read_text().strip() == ran.stdout.strip()
    kept = (repo.work / "runs" / "learner-metrics.jsonl").read_text().splitlines()
    assert json.loads(kept[-1]) == run["report"]
    assert run["load"]["failed"] == {} and run["load"]["sent"] == 2400

    report = run["report"]
    assert report["promotion"] == {"candidate": True, "reasons": []}, (run["load"], report["promotion"])
    ended = [w for w in report["windows"] if w["ended"] and w["group"] == "all"]
    assert len(ended) == 2 and ended[1]["start_ms"] - ended[0]["start_ms"] == 24 * 3600 * 1000
    assert ended[0]["start_ms"] == run["start_ms"]  # the week starts at a UTC midnight
    for window in ended:
        assert window["samples"] >= MIN_SAMPLES and window["uplift_low"] >= 0.10
    # Where the champion is wrong the challenger is much better; where the truth is unchanged (chat) not.
    by_group = {(w["start_ms"], w["group"]): w for w in report["windows"] if w["ended"]}
    for window in ended:
        for task in WRONG_TASKS:
            assert by_group[(window["start_ms"], f"task:{task}")]["uplift_low"] >= 0.10
        assert by_group[(window["start_ms"], "task:chat")]["uplift_low"] < 0.10

    plan = run["plan"]
    assert plan["blockers"] == []
    for task in WRONG_TASKS:
        section = plan["diff"].split(f"### {task}", 1)[1].split("###", 1)[0]
        top = re.search(r"Top arm: (?:\S+ -> )?(\S+?)(?:\.\s| \(unchanged\))", section)
        assert top is not None and top[1] in best_arms(task), section

    branch = "learner/promote-2026-12-01.9"
    assert plan["result"]["commit"] and plan["branch"] == branch
    proposed = json.loads(git(repo.work, "show", f"{branch}:policies/champion.json"))
    assert proposed["version"] == "2026-12-01.9"
    for task in WRONG_TASKS:
        table = proposed["tasks"][task]
        assert max(table, key=table.__getitem__) in best_arms(task)
    assert git(repo.work, "rev-parse", "--abbrev-ref", "HEAD") == "main"  # the checkout untouched
    assert ran.returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--days", "1"), "--days must be at least 2"),
        (("--minutes", "0.1"), "--minutes must be from 0.5 to 120"),
        (("--rate", "0"), "--rate must be above 0"),
        (("--traffic-split", "1.5"), "--traffic-split must be from 0 to 1"),
        (("--on-policy-from-day", "7"), "--on-policy-from-day must be a day of the week after the first"),
        (("--challenger", "missing.json"), "--challenger missing.json: [Errno 2]"),
        (("--scenario", "sunny"), "invalid choice: 'sunny'"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    command = [sys.executable, "-m", "cli", "learner-week", "--var-dir", str(tmp_path / "var"), *args]
    ran = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2 and message in ran.stderr, ran.stderr
    assert not (tmp_path / "var").exists()
