"""``symphony release [--dry-run] [--json]``: the v3.0.0 release pack, checked, tagged and drafted.

Checks, each a PASS/FAIL line:

- the version in ``pyproject.toml`` is ``--version`` (3.0.0);
- ``CHANGELOG.md`` has its entry (``## [3.0.0]``);
- ``docs/release-v<version>.md``, the release summary the checklist links, names the version and links
  the runbook (``docs/runbook.md``, which exists);
- ``symphony mvp3-validate`` passed (``runs/mvp3/mvp3-validate.json``) on this commit, or on an
  ancestor that differs from it only in documentation (``docs/``, ``*.md``);
- the working tree has no uncommitted change (the tag must name what was validated).

Then the artifacts are listed with their SHA-256: the mvp3 run's judgement and steps, and the gates'
files (``runs/gates/``: the k6 summary, the chaos results, the rollback drill, and
``runs/gates/a11y/``: the Lighthouse reports). With ``--dry-run`` nothing is written. Otherwise,
when every check passed, the annotated tag ``v<version>`` is made, and with ``GITHUB_TOKEN`` and
``GITHUB_REPOSITORY`` set (``GITHUB_API_URL`` for GitHub Enterprise or a stand-in) the tag is pushed
to ``--remote`` and a draft GitHub Release is created with the summary as its body and the artifacts
uploaded as its assets (``POST /repos/{owner}/{repo}/releases``, then the ``upload_url`` it
answers). Exit 1 when a check fails or a step of the release does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from cli.report import progress_printer

DOCS_ONLY = ("docs/", "README.md", "CHANGELOG.md")
MVP3_RESULT = Path("runs/mvp3/mvp3-validate.json")
ARTIFACT_GLOBS = ("runs/mvp3/*.json", "runs/gates/*", "runs/gates/a11y/*")
RUNBOOK = Path("docs/runbook.md")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name:<28} {self.detail}"


@dataclass(frozen=True)
class Artifact:
    path: str
    bytes: int
    sha256: str


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def checks(version: str) -> list[Check]:
    return [_version(version), _changelog(version), _summary(version), _validated(), _clean()]


def _version(version: str) -> Check:
    found = tomllib.loads(Path("pyproject.toml").read_text())["project"]["version"]
    return Check("version", found == version, f"pyproject.toml says {found}")


def _changelog(version: str) -> Check:
    heading = f"## [{version}]"
    lines = Path("CHANGELOG.md").read_text().splitlines()
    entry = next((line for line in lines if line.startswith(heading)), None)
    return Check("CHANGELOG entry", entry is not None, entry or f"no `{heading}` heading")


def _summary(version: str) -> Check:
    path = Path(f"docs/release-v{version}.md")
    if not path.is_file():
        return Check("release summary", False, f"{path} is missing")
    text = path.read_text()
    missing = [what for what in (version, str(RUNBOOK.name)) if what not in text]
    if not RUNBOOK.is_file():
        missing.append(f"{RUNBOOK} (the file)")
    return Check(
        "release summary", not missing, f"{path}" + (f": missing {', '.join(missing)}" if missing else "")
    )


def _validated() -> Check:
    try:
        result = json.loads(MVP3_RESULT.read_text())
    except (OSError, ValueError) as exc:
        return Check("mvp3-validate passed", False, f"cannot read {MVP3_RESULT}: {exc}")
    passed = sum(bool(row["passed"]) for row in result["rows"])
    figure = f"{passed} of {len(result['rows'])} rows PASS"
    if not result["passed"]:
        return Check("mvp3-validate passed", False, figure)
    commit = str(result.get("commit") or "")
    changed = _changed_since(commit)
    if changed is None:
        return Check(
            "mvp3-validate passed",
            False,
            f"{figure}, but on {commit or 'no commit'}: not this one's ancestor",
        )
    code = [path for path in changed if not path.startswith(DOCS_ONLY) and not path.endswith(".md")]
    detail = f"{figure} on {commit[:12]}" + (f"; changed since: {', '.join(code[:5])}" if code else "")
    return Check("mvp3-validate passed", not code, detail)


def _changed_since(commit: str) -> list[str] | None:
    """The files changed from ``commit`` to HEAD; None when it is not HEAD's ancestor."""
    if not commit:
        return None
    ancestor = subprocess.run(
        ["git", "merge-base", "--is-ancestor", commit, "HEAD"], capture_output=True, check=False
    )
    if ancestor.returncode != 0:
        return None
    return [line for line in git("diff", "--name-only", commit, "HEAD").splitlines() if line]


def _clean() -> Check:
    status = git("status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in status.splitlines()]
    return Check(
        "committed",
        not changed,
        "no uncommitted change" if not changed else f"uncommitted: {', '.join(changed[:5])}",
    )


def artifacts() -> list[Artifact]:
    found = sorted({path for pattern in ARTIFACT_GLOBS for path in Path().glob(pattern) if path.is_file()})
    return [Artifact(str(p), p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()) for p in found]


def publish(version: str, files: list[Artifact], remote: str) -> dict[str, Any]:
    """The annotated tag, and with GitHub set, the tag pushed and a draft release with the artifacts."""
    tag = f"v{version}"
    git("tag", "-a", tag, "-m", f"Symphony {version}")
    token, repository = os.environ.get("GITHUB_TOKEN", ""), os.environ.get("GITHUB_REPOSITORY", "")
    if not (token and repository):
        return {"tag": tag, "release": None}
    git("push", remote, tag)
    api = os.environ.get("GITHUB_API_URL") or "https://api.github.com"
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    body = {
        "tag_name": tag,
        "name": f"Symphony {version}",
        "body": Path(f"docs/release-v{version}.md").read_text(),
        "draft": True,
    }
    with httpx.Client(headers=headers, timeout=60.0) as client:
        created = client.post(f"{api.rstrip('/')}/repos/{repository}/releases", json=body)
        if created.status_code != 201:
            raise RuntimeError(f"GitHub refused the release ({created.status_code}): {created.text[:300]}")
        release = created.json()
        upload = str(release["upload_url"]).split("{", 1)[0]  # the RFC 6570 template's {?name,label} part
        for artifact in files:
            name = artifact.path.replace("/", "--")
            answer = client.post(
                upload,
                params={"name": name},
                content=Path(artifact.path).read_bytes(),
                headers={"Content-Type": "application/octet-stream"},
            )
            if answer.status_code != 201:
                raise RuntimeError(
                    f"GitHub refused the asset {name} ({answer.status_code}): {answer.text[:300]}"
                )
    return {"tag": tag, "release": release.get("html_url"), "assets": len(files)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", default="3.0.0", help="the version to release (default 3.0.0)")
    parser.add_argument(
        "--remote", default="origin", help="the git remote the tag is pushed to (default origin)"
    )
    parser.add_argument("--dry-run", action="store_true", help="check and list the artifacts; write nothing")
    parser.add_argument("--json", action="store_true", help="print the checks and artifacts as JSON")


def command(settings: object, args: argparse.Namespace) -> int:
    say = progress_printer()
    results = checks(args.version)
    files = artifacts()
    passed = all(check.ok for check in results)
    outcome: dict[str, Any] = {}
    if passed and not args.dry_run:
        try:
            outcome = publish(args.version, files, args.remote)
        except (RuntimeError, subprocess.CalledProcessError, httpx.HTTPError) as exc:
            detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
            say(f"symphony release: {detail}")
            passed = False
    body = {
        "version": args.version,
        "passed": passed,
        "dry_run": args.dry_run,
        "checks": [asdict(c) for c in results],
        "artifacts": [asdict(a) for a in files],
        "published": outcome,
    }
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        lines = [c.line() for c in results] + ["", f"artifacts ({len(files)}):"]
        lines += [f"  {a.path}  {a.bytes} bytes  sha256 {a.sha256}" for a in files]
        if outcome:
            lines.append(
                f"tagged {outcome['tag']}; draft release: {outcome.get('release') or 'none (GitHub not set)'}"
            )
        lines.append(
            f"release {args.version}: {'PASS' if passed else 'FAIL'}{' (dry run)' if args.dry_run else ''}"
        )
        print("\n".join(lines))
    return 0 if passed else 1
