"""The GitHub stand-in's pull requests over a real bare repository: opened only for a pushed head,
merged as a real merge commit, as the go-live replay uses it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from cli.github_standin import serve_github

TOKEN = "ghp_standin0123456789"
REPOSITORY = "acme/symphony"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def pushed_branch(tmp_path: Path) -> tuple[Path, str]:
    """A bare remote with `main` and `feature` (one commit ahead), and the feature's commit."""
    bare, work = tmp_path / "origin.git", tmp_path / "work"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(work)], check=True)
    for key, value in (("user.name", "Dev"), ("user.email", "dev@example.com")):
        git(work, "config", key, value)
    (work / "a.txt").write_text("a\n")
    git(work, "add", "a.txt")
    git(work, "commit", "--quiet", "-m", "a")
    git(work, "checkout", "--quiet", "-b", "feature")
    (work / "b.txt").write_text("b\n")
    git(work, "add", "b.txt")
    git(work, "commit", "--quiet", "-m", "b")
    git(work, "push", "--quiet", str(bare), "main", "feature")
    return bare, git(work, "rev-parse", "feature")


def test_a_pull_request_is_opened_for_a_pushed_head_and_merged_into_its_base(tmp_path: Path) -> None:
    bare, feature = pushed_branch(tmp_path)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        serve_github(bare, REPOSITORY, TOKEN) as github,
        httpx.Client(base_url=github.url, headers=auth) as api,
    ):
        missing = api.post(f"/repos/{REPOSITORY}/pulls", json={"head": "nope", "base": "main", "title": "t"})
        assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "head"
        opened = api.post(
            f"/repos/{REPOSITORY}/pulls", json={"head": "feature", "base": "main", "title": "b"}
        )
        assert opened.status_code == 201 and opened.json()["merged"] is False
        number = opened.json()["number"]
        merged = api.put(f"/repos/{REPOSITORY}/pulls/{number}/merge")
        assert merged.status_code == 200 and merged.json()["merged"] is True
        assert api.put(f"/repos/{REPOSITORY}/pulls/{number}/merge").status_code == 405  # merged already
        state = api.get(f"/repos/{REPOSITORY}/pulls/{number}").json()
        refused = httpx.post(
            f"{github.url}/repos/{REPOSITORY}/pulls", json={}, headers={"Authorization": "x"}
        )
    merge = merged.json()["sha"]
    assert git(bare, "rev-parse", "main") == merge == state["merge_commit_sha"]
    assert git(bare, "rev-list", "--parents", "-n", "1", merge).split()[2] == feature  # a true merge
    assert feature in git(bare, "log", "--format=%H", "main").split()
    assert git(bare, "show", "main:b.txt") == "b"
    assert refused.status_code == 401


def test_issues_and_comments_are_kept_and_an_asset_name_is_taken_once(tmp_path: Path) -> None:
    bare, _ = pushed_branch(tmp_path)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        serve_github(bare, REPOSITORY, TOKEN) as github,
        httpx.Client(base_url=github.url, headers=auth) as api,
    ):
        assert api.post(f"/repos/{REPOSITORY}/issues", json={"body": "no title"}).status_code == 422
        issue = api.post(f"/repos/{REPOSITORY}/issues", json={"title": "incident", "labels": ["evidence"]})
        assert issue.status_code == 201
        number = issue.json()["number"]
        assert (
            api.post(f"/repos/{REPOSITORY}/issues/{number}/comments", json={"body": "more"}).status_code
            == 201
        )
        assert api.post(f"/repos/{REPOSITORY}/issues/99/comments", json={"body": "x"}).status_code == 404
        release = api.post(f"/repos/{REPOSITORY}/releases", json={"tag_name": "evidence"}).json()
        upload = release["upload_url"].split("{", 1)[0]
        first = api.post(
            upload, params={"name": "a.wacz"}, content=b"zip", headers={"Content-Type": "application/zip"}
        )
        again = api.post(
            upload, params={"name": "a.wacz"}, content=b"zip", headers={"Content-Type": "application/zip"}
        )
    assert github.issues[number]["comments"] == ["more"] and github.issues[number]["labels"] == ["evidence"]
    assert first.status_code == 201 and first.json()["browser_download_url"].endswith(
        "/download/evidence/a.wacz"
    )
    assert again.status_code == 422 and again.json()["errors"][0]["code"] == "already_exists"
    assert github.assets[release["id"]] == {"a.wacz": b"zip"}
