"""Promotion as a pull request: the new champion on a branch of its own, pushed, and a pull request opened.

What a promotion writes, in one commit on the new branch ``learner/promote-<version>``
whose parent is the tip of ``base`` (``main`` by default):

- ``policies/champion.json``: the champion the proxy serves (``POLICY_FILE``). Merging
  the pull request is the promotion; reverting its commit restores the previous champion.
- ``policies/champion.<version>.json``: the same content, kept as the record of that
  version (never edited afterwards), so every promoted version stays readable by name.

The new file keeps the champion file's comments and key order (read from ``base``, not
from the working tree) with the proposed policy's values in place.

The commit is made with git plumbing against a temporary index (``hash-object``,
``update-index``, ``write-tree``, ``commit-tree``, ``update-ref``): the caller's HEAD,
index, working tree and current branch are never touched, whatever state they are in.
The commit's author is git's configured identity, as for any commit.

With a ``GitHub`` target the branch is pushed with ``git push <remote>`` (using the
remote's own git credentials: a credential helper, an SSH key, the checkout's token in
CI) and a pull request is opened with ``POST /repos/{owner}/{repo}/pulls``, its body the
policy diff (``learner.policy_diff``). The GitHub token is used only in that request's
``Authorization`` header: it is never passed to git, logged, or shown in an error or repr.
Without a target, the promotion is the local branch and commit.

``plan_promotion`` computes everything and writes nothing (``--dry-run``: print
``Plan.describe()`` and ``Plan.diff``); ``promote`` carries a plan out.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from pydantic import ValidationError

from learner.policy_diff import render_diff
from learner.promotion import uplift_text
from symphony.catalog import Catalog, Policy

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
DEFAULT_BASE = "main"
POLICY_PATH = "policies/champion.json"
BRANCH_PREFIX = "learner/promote-"
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")
# Variables that would point git at another repository, index or work tree than ours.
_GIT_LOCATION_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


class PromotionError(RuntimeError):
    """A promotion step failed; the message says what happened and what to do."""


@dataclass(frozen=True)
class GitHub:
    """Where to open the pull request: ``GITHUB_REPOSITORY`` (``owner/name``) and ``GITHUB_TOKEN``."""

    repository: str
    token: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    remote: str = "origin"  # the git remote (name or URL) the branch is pushed to

    def __post_init__(self) -> None:
        if not _REPOSITORY.fullmatch(self.repository):
            raise PromotionError(
                f"GITHUB_REPOSITORY must be owner/name (e.g. acme/symphony), not {self.repository!r}"
            )
        if not self.token:
            raise PromotionError("GITHUB_TOKEN is empty: set it to a token that may open pull requests")


@dataclass(frozen=True)
class Plan:
    """What a promotion would do; building one writes nothing."""

    repo: Path
    champion_version: str
    version: str
    base: str
    base_commit: str
    branch: str
    files: dict[str, str]  # repository path -> the new content
    title: str
    commit_message: str
    diff: str  # the Markdown policy diff: the pull request's body
    github: GitHub | None
    blockers: list[str]  # why ``promote`` would refuse (empty: it would go ahead)

    def describe(self) -> str:
        """The steps, one per line, as a dry run prints them."""
        lines = [
            f"branch {self.branch} from {self.base} ({self.base_commit[:12]}), one commit:"
            f" {self.commit_message.splitlines()[0]}",
            *(f"  write {path}" for path in sorted(self.files)),
        ]
        if self.github is None:
            lines.append("no pull request: GITHUB_TOKEN and GITHUB_REPOSITORY are not both set")
        else:
            lines += [
                f"git push {self.github.remote} {self.branch}",
                f"open a pull request on {self.github.repository} ({self.github.api_url}):"
                f" {self.branch} -> {self.base}, {self.title!r}",
            ]
        lines += [f"refuse: {reason}" for reason in self.blockers]
        return "\n".join(lines)


@dataclass(frozen=True)
class Result:
    branch: str
    commit: str
    pushed: bool
    pull_request_url: str | None
    pull_request_number: int | None


def branch_name(version: str) -> str:
    return BRANCH_PREFIX + version


def versioned_path(version: str, policy_path: str = POLICY_PATH) -> str:
    """Where a version is recorded: ``policies/champion.<version>.json`` beside the served file."""
    path = PurePosixPath(policy_path)
    return str(path.with_name(f"{path.stem}.{version}{path.suffix}"))


def policy_text(policy: Policy, template: Mapping[str, Any] | None = None) -> str:
    """The policy file: ``template``'s keys (comments included) in their order, the policy's values."""
    values = policy.model_dump(mode="json")
    values["tasks"] = {task: dict(sorted(table.items())) for task, table in sorted(values["tasks"].items())}
    data = dict(template or {})
    data.update(values)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def base_champion(
    repo: Path, base: str = DEFAULT_BASE, path: str = POLICY_PATH
) -> tuple[Policy, dict[str, Any]]:
    """The champion on ``base`` (as committed, not as in the working tree) and its raw JSON."""
    commit = _commit(repo, base)
    raw = _git(repo, "show", f"{commit}:{path}", what=f"read {path} on {base}")
    try:
        data = json.loads(raw)
        return Policy.model_validate(data), data
    except (ValueError, ValidationError) as exc:
        raise PromotionError(f"{path} on {base} is not a valid policy file: {exc}") from None


def plan_promotion(
    repo: Path,
    proposed: Policy,
    report: Mapping[str, Any],
    *,
    base: str = DEFAULT_BASE,
    github: GitHub | None = None,
    catalog: Catalog | None = None,
    policy_path: str = POLICY_PATH,
) -> Plan:
    """Everything ``promote`` would do, from the champion on ``base`` and the learner's ``report``.

    Writes nothing. Errors (no such base, an invalid version, an arm outside ``catalog``)
    raise ``PromotionError``; reasons not to promote (the report is not a promotion
    candidate, or judged another champion; the branch exists) go to ``Plan.blockers``.
    """
    if not _VERSION.fullmatch(proposed.version) or ".." in proposed.version:
        raise PromotionError(
            f"version {proposed.version!r}: use letters, digits, '.', '_' and '-' (e.g. 2026-12-01.1)"
        )
    base_commit = _commit(repo, base)  # resolved once: the champion read and the parent agree
    champion, template = base_champion(repo, base_commit, policy_path)
    if proposed.version == champion.version:
        raise PromotionError(f"version {proposed.version} is already the champion on {base}")
    if catalog is not None:
        unknown = sorted(arm for arm in proposed.arms if not catalog.has(*arm.partition("/")[::2]))
        if unknown:
            raise PromotionError(f"arms not in catalog {catalog.version}: {', '.join(unknown)}")
    branch = branch_name(proposed.version)
    text = policy_text(proposed, template)
    files = {policy_path: text, versioned_path(proposed.version, policy_path): text}
    title = f"learner: promote routing champion {proposed.version} (was {champion.version})"
    return Plan(
        repo=repo,
        champion_version=champion.version,
        version=proposed.version,
        base=base,
        base_commit=base_commit,
        branch=branch,
        files=files,
        title=title,
        commit_message=f"{title}\n\n{_evidence_line(report)}\n",
        diff=render_diff(champion, proposed, report),
        github=github,
        blockers=_blockers(repo, branch, champion, report),
    )


def _evidence_line(report: Mapping[str, Any]) -> str:
    windows = [w for w in report.get("windows") or [] if w.get("group") == "all"]
    bounds = ", ".join(
        uplift_text(w["uplift_low"]) for w in sorted(windows, key=lambda w: int(w["start_ms"]))
    )
    return (
        f"Challenger {report.get('challenger_version', '?')}; uplift lower bounds per 24h window:"
        f" {bounds or 'none'}. The pull request carries the full policy diff and evidence."
    )


def _blockers(repo: Path, branch: str, champion: Policy, report: Mapping[str, Any]) -> list[str]:
    blockers = []
    promotion = report.get("promotion") or {}
    if not promotion.get("candidate"):
        blockers.append("the learner's report does not name the challenger a promotion candidate")
    judged = report.get("champion_version")
    if judged != champion.version:
        blockers.append(f"the report judged champion {judged}, but the base's champion is {champion.version}")
    if _has_ref(repo, f"refs/heads/{branch}"):
        blockers.append(f"branch {branch} exists already (delete it with `git branch -D {branch}` to redo)")
    return blockers


def promote(plan: Plan, *, force: bool = False) -> Result:
    """Commit the plan on its branch; with a GitHub target, push it and open the pull request.

    Refuses a plan with blockers unless ``force``; even then a branch that exists is never overwritten.
    """
    if plan.blockers and not force:
        raise PromotionError("not promoting: " + "; ".join(plan.blockers))
    commit = commit_branch(plan)
    log.info("committed %s on branch %s", commit[:12], plan.branch)
    if plan.github is None:
        return Result(plan.branch, commit, pushed=False, pull_request_url=None, pull_request_number=None)
    push_branch(plan.repo, plan.branch, plan.github.remote)
    number, url = open_pull_request(
        plan.github, title=plan.title, head=plan.branch, base=plan.base, body=plan.diff
    )
    log.info("opened pull request #%d: %s", number, url)
    return Result(plan.branch, commit, pushed=True, pull_request_url=url, pull_request_number=number)


def commit_branch(plan: Plan) -> str:
    """One commit on ``plan.base_commit`` with ``plan.files``, on the new branch; no checkout touched."""
    with tempfile.TemporaryDirectory(prefix="symphony-promote-") as scratch:
        index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(plan.repo, "read-tree", plan.base_commit, env=index, what="read the base tree")
        for path, content in sorted(plan.files.items()):
            blob = _git(
                plan.repo, "hash-object", "-w", "--stdin", stdin=content, what=f"store {path}"
            ).strip()
            _git(
                plan.repo,
                "update-index",
                "--add",
                "--cacheinfo",
                f"100644,{blob},{path}",
                env=index,
                what=f"stage {path}",
            )
        tree = _git(plan.repo, "write-tree", env=index, what="write the tree").strip()
    commit = _git(
        plan.repo,
        "commit-tree",
        tree,
        "-p",
        plan.base_commit,
        stdin=plan.commit_message,
        what="commit (is git's user.name and user.email set?)",
    ).strip()
    # The empty old value makes git refuse to move a branch that exists: nothing is overwritten.
    _git(
        plan.repo,
        "update-ref",
        "-m",
        f"learner: promote {plan.version}",
        f"refs/heads/{plan.branch}",
        commit,
        "",
        what=f"create branch {plan.branch} (does it exist already?)",
    )
    return commit


def push_branch(repo: Path, branch: str, remote: str) -> None:
    _git(
        repo,
        "push",
        "--porcelain",
        remote,
        f"refs/heads/{branch}:refs/heads/{branch}",
        what=f"push {branch} to {remote} (the branch is committed locally; check the remote's"
        f" credentials and retry with `git push {remote} {branch}`)",
    )


def open_pull_request(github: GitHub, *, title: str, head: str, base: str, body: str) -> tuple[int, str]:
    """``POST /repos/{owner}/{repo}/pulls``; the pull request's number and web address."""
    url = f"{github.api_url.rstrip('/')}/repos/{github.repository}/pulls"
    headers = {
        "Authorization": f"Bearer {github.token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": "symphony-learner",
    }
    payload = {"title": title, "head": head, "base": base, "body": body, "maintainer_can_modify": True}
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise PromotionError(
            f"could not reach the GitHub API at {github.api_url} ({type(exc).__name__}: {exc}):"
            f" the branch {head} is pushed; open the pull request by hand or retry when the API answers"
        ) from None
    if response.status_code != 201:
        raise PromotionError(_github_error(github, response, head, base))
    data = response.json()
    return int(data["number"]), str(data["html_url"])


def _github_error(github: GitHub, response: httpx.Response, head: str, base: str) -> str:
    try:
        data = response.json()
    except ValueError:
        data = {}
    detail = str(data.get("message", "")) if isinstance(data, dict) else ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list):
        detail += "".join(f"; {e.get('message') or e}" if isinstance(e, dict) else f"; {e}" for e in errors)
    detail = detail.replace(github.token, "***")
    status = response.status_code
    what = {
        401: "GitHub refused the token: set GITHUB_TOKEN to a valid, unexpired token",
        403: "the token may not open pull requests here: it needs `pull requests: write`"
        f" (fine-grained) or the `repo` scope on {github.repository}",
        404: f"repository {github.repository} not found, or the token cannot see it: check"
        " GITHUB_REPOSITORY and the token's repository access",
        422: f"GitHub could not open a pull request from {head} into {base}: a pull request for"
        f" {head} may be open already, or {base} may not exist on {github.repository}",
    }.get(status, "the GitHub API failed")
    return f"{what} (HTTP {status}{': ' + detail if detail else ''}); the branch {head} is pushed"


def _git(
    repo: Path,
    *args: str,
    what: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARIABLES}
    environment.update(env or {})
    completed = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if completed.returncode != 0:
        raise PromotionError(f"git could not {what}: {completed.stderr.strip()}")
    return completed.stdout


def _commit(repo: Path, ref: str) -> str:
    return _git(
        repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", what=f"find a commit named {ref}"
    ).strip()


def _has_ref(repo: Path, ref: str) -> bool:
    try:
        _git(repo, "rev-parse", "--verify", "--quiet", ref, what=f"find {ref}")
    except PromotionError:
        return False
    return True
