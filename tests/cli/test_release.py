"""`symphony release`: the pack's checks on a real repository, and the tag and draft release on the
GitHub stand-in (``cli.github_standin``), a real HTTP server over a real bare remote."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.github_standin import GitHubStandIn, serve_github

TOKEN = "ghp_release0123456789"
REPOSITORY = "acme/symphony"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout ready for 3.0.0, validated by mvp3 on its HEAD, with a bare `origin`."""
    work, bare = tmp_path / "work", tmp_path / "origin.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(work)], check=True)
    git(work, "config", "user.name", "Release Manager")
    git(work, "config", "user.email", "release@example.com")
    files = {
        "pyproject.toml": '[project]\nname = "symphony"\nversion = "3.0.0"\n',
        "CHANGELOG.md": "# Changelog\n\n## [3.0.0] - 2026-12-01\n\n- the autopilot\n",
        "docs/release-v3.0.0.md": "# Symphony 3.0.0\n\nRollback: see [the runbook](runbook.md).\n",
        "docs/runbook.md": "# Runbook\n",
        "proxy/app.py": "ANSWER = 42\n",
        ".gitignore": "runs/\n",
    }
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    head = commit_all(work, "3.0.0")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "--quiet", "origin", "main")
    validated(work, head, passed=True)
    (work / "runs" / "gates").mkdir(parents=True)
    (work / "runs" / "gates" / "perf-summary.json").write_text('{"metrics": {}}\n')
    return work


def validated(work: Path, commit: str, *, passed: bool) -> None:
    rows = [{"number": n, "passed": passed or n != 5} for n in range(1, 7)]
    result = {"passed": passed, "commit": commit, "rows": rows}
    (work / "runs" / "mvp3").mkdir(parents=True, exist_ok=True)
    (work / "runs" / "mvp3" / "mvp3-validate.json").write_text(json.dumps(result))


def release(work: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    command = [sys.executable, "-m", "cli", "release", *args, "--json"]
    base = {"PATH": "/usr/bin:/bin", "HOME": str(work)}
    done = subprocess.run(
        command, cwd=work, capture_output=True, text=True, env=base | (env or {}), timeout=60
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def failed_checks(body: dict[str, Any]) -> list[str]:
    return [check["name"] for check in body["checks"] if not check["ok"]]


def test_a_dry_run_checks_everything_lists_the_artifacts_and_writes_nothing(repo: Path) -> None:
    code, body = release(repo, "--dry-run")
    assert code == 0 and failed_checks(body) == [] and body["published"] == {}
    listed = {a["path"]: a for a in body["artifacts"]}
    assert set(listed) == {"runs/gates/perf-summary.json", "runs/mvp3/mvp3-validate.json"}
    expected = hashlib.sha256((repo / "runs/gates/perf-summary.json").read_bytes()).hexdigest()
    assert listed["runs/gates/perf-summary.json"]["sha256"] == expected
    assert git(repo, "tag") == ""


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        (lambda w: (w / "pyproject.toml").write_text('[project]\nversion = "2.9.0"\n'), "version"),
        (lambda w: (w / "CHANGELOG.md").write_text("# Changelog\n\n## [2.9.0]\n"), "CHANGELOG entry"),
        (lambda w: (w / "docs/release-v3.0.0.md").unlink(), "release summary"),
        (lambda w: (w / "docs/runbook.md").unlink(), "release summary"),
    ],
)
def test_each_missing_piece_of_the_pack_fails_its_check(repo: Path, change: Any, failed: str) -> None:
    change(repo)
    validated(repo, commit_all(repo, "change"), passed=True)
    code, body = release(repo, "--dry-run")
    assert code == 1 and failed_checks(body) == [failed]


def test_a_failed_validation_or_one_of_another_commit_blocks_the_release(repo: Path) -> None:
    validated(repo, git(repo, "rev-parse", "HEAD"), passed=False)
    code, body = release(repo, "--dry-run")
    assert code == 1 and failed_checks(body) == ["mvp3-validate passed"]
    assert "5 of 6 rows PASS" in body["checks"][3]["detail"]

    validated(repo, git(repo, "rev-parse", "HEAD"), passed=True)
    (repo / "docs" / "runbook.md").write_text("# Runbook\n\nMore words.\n")
    commit_all(repo, "docs only")
    assert release(repo, "--dry-run")[0] == 0  # documentation after the validation is fine

    (repo / "proxy" / "app.py").write_text("ANSWER = 43\n")
    commit_all(repo, "code")
    code, body = release(repo, "--dry-run")
    assert code == 1 and "changed since: proxy/app.py" in body["checks"][3]["detail"]


def test_an_uncommitted_change_blocks_the_release(repo: Path) -> None:
    (repo / "proxy" / "app.py").write_text("ANSWER = 0\n")
    code, body = release(repo, "--dry-run")
    assert code == 1 and failed_checks(body) == ["committed"]


def test_the_release_tags_pushes_and_drafts_a_github_release_with_the_artifacts(repo: Path) -> None:
    bare = repo.parent / "origin.git"
    with serve_github(bare, REPOSITORY, TOKEN) as github:
        env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_API_URL": github.url}
        code, body = release(repo, env=env)
    assert code == 0, body
    assert git(bare, "tag") == "v3.0.0" and git(repo, "cat-file", "-t", "v3.0.0") == "tag"  # annotated
    assert git(bare, "rev-parse", "v3.0.0^{commit}") == git(repo, "rev-parse", "HEAD")
    [created] = github.releases.values()
    summary = (repo / "docs/release-v3.0.0.md").read_text()
    assert (created["tag_name"], created["draft"], created["body"]) == ("v3.0.0", True, summary)
    assert github.assets[created["id"]] == {
        "runs--gates--perf-summary.json": (repo / "runs/gates/perf-summary.json").read_bytes(),
        "runs--mvp3--mvp3-validate.json": (repo / "runs/mvp3/mvp3-validate.json").read_bytes(),
    }
    assert all(call.headers.get("Authorization") == "Bearer ***" for call in github.calls)
    assert body["published"]["release"] == created["html_url"]


def test_the_standin_makes_a_missing_tag_at_its_target_as_github_does(repo: Path) -> None:
    bare = repo.parent / "origin.git"
    standin = GitHubStandIn(bare, REPOSITORY, TOKEN)
    good = {"Authorization": f"Bearer {TOKEN}"}
    releases = f"/repos/{REPOSITORY}/releases"
    assert standin.answer("POST", releases, good, {"tag_name": "v9", "target_commitish": "nope"})[0] == 422
    assert standin.answer("POST", releases, good, {"tag_name": "bad..tag"})[0] == 422
    assert standin.answer("POST", releases, good, {"tag_name": "evidence"})[0] == 201
    assert git(bare, "rev-parse", "evidence") == git(bare, "rev-parse", "main")
    assert standin.answer("GET", f"{releases}/tags/evidence", good, {})[1]["id"] == 1
    assert standin.answer("GET", f"{releases}/tags/v9", good, {})[0] == 404
    assert standin.answer("POST", releases, {"Authorization": "Bearer x"}, {})[0] == 401
