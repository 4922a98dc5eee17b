"""Promotion as a pull request, with real git in a temporary repository and a local stand-in for GitHub.

The fixtures ``repo`` and ``github`` (``tests/github_standin.py``): a checkout whose remote is
a local bare repository, and a real HTTP server standing in for the GitHub REST API.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from cli.github_standin import GitHubStandIn
from learner.policy_diff import propose
from learner.pull_request import GitHub, PromotionError, base_champion, plan_promotion, promote
from symphony.catalog import Policy, load_catalog
from tests.github_standin import REPOSITORY, TOKEN, Remote, git

CHAMPION_FILE = Path(__file__).parents[2] / "policies" / "champion.json"
VERSION = "2026-12-01.1"
BRANCH = f"learner/promote-{VERSION}"
DAY = 86_400_000


def report(champion_version: str, *, candidate: bool = True) -> dict[str, Any]:
    def window(start_ms: int, uplift_low: float) -> dict[str, Any]:
        estimate = {"value": 0.66, "low": 0.63, "high": 0.69, "samples": 1500, "effective_samples": 700.0}
        return {
            "start_ms": start_ms,
            "group": "all",
            "samples": 1500,
            "champion": 0.58,
            **{name: estimate for name in ("ips", "snips", "dr")},
            "uplift_low": uplift_low,
            "slo": {"p95_ms": 2100.0, "error_rate": 0.003, "breached": False},
        }

    return {
        "as_of_ms": 20 * DAY,
        "days": 2,
        "champion_version": champion_version,
        "challenger_version": "ch-41",
        "decisions": 3000,
        "awaiting_feedback": 20,
        "windows": [window(18 * DAY, 0.11), window(19 * DAY, 0.13)],
        "promotion": {
            "candidate": candidate,
            "reasons": [] if candidate else ["window 0: an SLO was breached"],
        },
    }


def proposal(repo: Remote) -> Policy:
    champion, _ = base_champion(repo.work)
    tables = {"code": {"anthropic/claude-sonnet-4-5": 1.0, "deepseek/deepseek-chat": math.exp(-2.0)}}
    return propose(champion, tables, VERSION)


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file (``.git`` included) by path: a hash of its content."""
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for root in roots
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_a_promotion_without_github_is_one_commit_on_a_new_branch(repo: Remote) -> None:
    proposed = proposal(repo)
    plan = plan_promotion(repo.work, proposed, report("2026-11-27.1"), catalog=load_catalog())
    result = promote(plan)
    assert (result.branch, result.pushed, result.pull_request_url) == (BRANCH, False, None)
    assert git(repo.work, "rev-parse", BRANCH) == result.commit
    assert git(repo.work, "rev-list", f"main..{BRANCH}").splitlines() == [result.commit]
    assert git(repo.work, "rev-parse", f"{BRANCH}^") == repo.base
    changed = git(repo.work, "diff-tree", "--no-commit-id", "--name-status", "-r", result.commit).splitlines()
    assert changed == [f"A\tpolicies/champion.{VERSION}.json", "M\tpolicies/champion.json"]
    served = json.loads(git(repo.work, "show", f"{BRANCH}:policies/champion.json"))
    assert Policy.model_validate(served) == proposed
    assert git(repo.work, "show", f"{BRANCH}:policies/champion.{VERSION}.json") == git(
        repo.work, "show", f"{BRANCH}:policies/champion.json"
    )
    original = json.loads(CHAMPION_FILE.read_text())
    assert list(served) == list(original)  # the file's comments and key order are kept
    assert served["comment"] == original["comment"]
    assert git(repo.work, "log", "-1", "--format=%s", BRANCH) == plan.title
    assert git(repo.bare, "branch", "--list", BRANCH) == ""  # nothing pushed


def test_the_callers_checkout_branch_index_and_changes_are_untouched(repo: Remote) -> None:
    git(repo.work, "switch", "--quiet", "-c", "feature")
    feature = json.loads(CHAMPION_FILE.read_text()) | {"version": "feature.1", "comment": "a feature's"}
    (repo.work / "policies" / "champion.json").write_text(json.dumps(feature))
    git(repo.work, "commit", "--quiet", "-am", "a commit on the feature branch")
    (repo.work / "README.md").write_text("staged edit\n")
    git(repo.work, "add", "README.md")
    (repo.work / "policies" / "champion.json").write_text('{"edited": "in the working tree"}\n')
    (repo.work / "notes.txt").write_text("untracked\n")
    status = git(repo.work, "status", "--porcelain=v2", "--branch")
    worktree = {p: h for p, h in snapshot(repo.work).items() if "/.git/" not in p}
    index = (repo.work / ".git" / "index").read_bytes()

    plan = plan_promotion(repo.work, proposal(repo), report("2026-11-27.1"))
    assert plan.champion_version == "2026-11-27.1"  # main's champion, not the feature branch's
    result = promote(plan)

    assert git(repo.work, "symbolic-ref", "HEAD") == "refs/heads/feature"
    assert (repo.work / ".git" / "index").read_bytes() == index
    assert {p: h for p, h in snapshot(repo.work).items() if "/.git/" not in p} == worktree
    assert git(repo.work, "status", "--porcelain=v2", "--branch") == status
    # the branch starts from main as committed, not from HEAD or the edited working tree
    assert git(repo.work, "rev-parse", f"{result.branch}^") == repo.base
    served = json.loads(git(repo.work, "show", f"{result.branch}:policies/champion.json"))
    assert (served["version"], served["comment"]) == (
        VERSION,
        json.loads(CHAMPION_FILE.read_text())["comment"],
    )
    assert git(repo.work, "diff", "--name-only", "main", result.branch).splitlines() == [
        f"policies/champion.{VERSION}.json",
        "policies/champion.json",
    ]


def test_with_github_the_branch_is_pushed_and_the_pull_request_carries_the_diff(
    repo: Remote, github: GitHubStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    target = GitHub(REPOSITORY, TOKEN, api_url=github.url)
    plan = plan_promotion(repo.work, proposal(repo), report("2026-11-27.1"), github=target)
    result = promote(plan)

    assert git(repo.bare, "rev-parse", f"refs/heads/{BRANCH}") == result.commit
    assert (result.pull_request_number, result.pull_request_url) == (1, f"{github.url}/{REPOSITORY}/pull/1")
    [call] = github.calls  # answered 201: it carried the token (the stand-in records it masked)
    assert (call.method, call.path) == ("POST", f"/repos/{REPOSITORY}/pulls")
    assert call.headers["Accept"] == "application/vnd.github+json"
    assert github.pulls[1].head == BRANCH
    assert call.body["title"] == f"learner: promote routing champion {VERSION} (was 2026-11-27.1)"
    assert (call.body["head"], call.body["base"]) == (BRANCH, "main")
    assert call.body["body"] == plan.diff
    assert plan.diff.startswith(f"# Routing policy `champion`: 2026-11-27.1 -> {VERSION}\n")
    assert "| deepseek/deepseek-chat | 0.7000 | 0.5000 | -0.2000 |" in plan.diff and "+13.0%" in plan.diff
    # the token goes only into the request's header
    shown = [repr(target), repr(plan), repr(result), plan.describe(), caplog.text]
    assert not any(TOKEN in text for text in shown)
    assert TOKEN not in git(repo.work, "log", "--all", "--format=%B")


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (
            401,
            "GitHub refused the token: set GITHUB_TOKEN to a valid, unexpired token"
            " (HTTP 401: Bad credentials)",
        ),
        (403, "it needs `pull requests: write`"),
        (404, "check GITHUB_REPOSITORY"),
        (422, f"a pull request for {BRANCH} may be open already"),
    ],
)
def test_a_github_error_says_what_to_do(
    repo: Remote, github: GitHubStandIn, status: int, advice: str
) -> None:
    github.fail_with = status
    plan = plan_promotion(
        repo.work,
        proposal(repo),
        report("2026-11-27.1"),
        github=GitHub(REPOSITORY, TOKEN, api_url=github.url),
    )
    with pytest.raises(PromotionError) as error:
        promote(plan)
    message = str(error.value)
    assert advice in message
    assert f"HTTP {status}" in message and f"the branch {BRANCH} is pushed" in message
    assert TOKEN not in message
    assert len(github.calls) == 1
    assert git(repo.bare, "rev-parse", f"refs/heads/{BRANCH}") == git(repo.work, "rev-parse", BRANCH)


def test_an_unreachable_github_api_is_a_clear_error(repo: Remote, github: GitHubStandIn) -> None:
    dead = github.url.replace("/api/v3", "").rsplit(":", 1)[0] + ":9/api"  # discard port: nothing listens
    plan = plan_promotion(
        repo.work, proposal(repo), report("2026-11-27.1"), github=GitHub(REPOSITORY, TOKEN, api_url=dead)
    )
    with pytest.raises(PromotionError, match="could not reach the GitHub API") as error:
        promote(plan)
    assert TOKEN not in str(error.value)


def test_a_dry_run_writes_nothing_and_says_what_it_would_do(repo: Remote, github: GitHubStandIn) -> None:
    before = snapshot(repo.work, repo.bare)
    target = GitHub(REPOSITORY, TOKEN, api_url=github.url)
    plan = plan_promotion(repo.work, proposal(repo), report("2026-11-27.1"), github=target)
    assert snapshot(repo.work, repo.bare) == before
    assert github.calls == []
    assert plan.diff.startswith("# Routing policy `champion`")
    assert plan.describe().splitlines() == [
        f"branch {BRANCH} from main ({repo.base[:12]}), one commit: {plan.title}",
        f"  write policies/champion.{VERSION}.json",
        "  write policies/champion.json",
        f"git push origin {BRANCH}",
        f"open a pull request on {REPOSITORY} ({github.url}): {BRANCH} -> main, {plan.title!r}",
    ]


def test_no_promotion_without_a_verdict_for_this_champion_or_over_an_existing_branch(repo: Remote) -> None:
    before = snapshot(repo.work)
    not_candidate = plan_promotion(repo.work, proposal(repo), report("2026-11-27.1", candidate=False))
    other_champion = plan_promotion(repo.work, proposal(repo), report("2026-10-01.1"))
    for plan in (not_candidate, other_champion):
        assert "refuse: " in plan.describe()
        with pytest.raises(PromotionError, match="not promoting: "):
            promote(plan)
    assert snapshot(repo.work) == before

    git(repo.work, "branch", BRANCH, "main")
    existing = plan_promotion(repo.work, proposal(repo), report("2026-11-27.1"))
    with pytest.raises(PromotionError, match=f"branch {BRANCH} exists already"):
        promote(existing)
    with pytest.raises(PromotionError, match=f"create branch {BRANCH}"):
        promote(existing, force=True)  # forcing past the verdict never overwrites a branch
    assert git(repo.work, "rev-parse", BRANCH) == repo.base


def test_bad_inputs_are_refused_before_anything_is_written(repo: Remote) -> None:
    champion, _ = base_champion(repo.work)
    with pytest.raises(PromotionError, match="use letters, digits"):
        plan_promotion(repo.work, champion.model_copy(update={"version": "../x"}), report("2026-11-27.1"))
    with pytest.raises(PromotionError, match="already the champion"):
        plan_promotion(repo.work, champion, report("2026-11-27.1"))
    unknown = propose(champion, {"code": {"nowhere/model": 1.0}}, VERSION)
    with pytest.raises(PromotionError, match="nowhere/model"):
        plan_promotion(repo.work, unknown, report("2026-11-27.1"), catalog=load_catalog())
    with pytest.raises(PromotionError, match="find a commit named trunk"):
        plan_promotion(repo.work, proposal(repo), report("2026-11-27.1"), base="trunk")
    with pytest.raises(PromotionError, match="GITHUB_REPOSITORY must be owner/name"):
        GitHub("symphony", TOKEN)
