"""A git repository with a remote, for ``cli.github_standin``'s stand-in of GitHub's REST API.

``repo`` (fixture): a checkout on ``main`` holding the shipped ``policies/champion.json``,
whose ``origin`` is a local bare repository. ``github`` (fixture): the stand-in over that
remote (pull requests, releases and their assets, issues and comments), serving on a free
port, recording every call.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHAMPION_FILE = Path(__file__).parents[1] / "policies" / "champion.json"
TOKEN = "ghp_test0123456789secret"
REPOSITORY = "acme/symphony"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@dataclass
class Remote:
    work: Path  # the caller's checkout
    bare: Path  # its `origin`
    base: str  # main's commit


def make_repo(tmp_path: Path) -> Remote:
    bare, work = tmp_path / "origin.git", tmp_path / "work"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(work)], check=True)
    git(work, "config", "user.name", "Operator")
    git(work, "config", "user.email", "operator@example.com")
    (work / "policies").mkdir()
    shutil.copy(CHAMPION_FILE, work / "policies" / "champion.json")
    (work / "README.md").write_text("symphony\n")
    git(work, "add", "policies/champion.json", "README.md")
    git(work, "commit", "--quiet", "-m", "champion")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "--quiet", "origin", "main")
    return Remote(work, bare, git(work, "rev-parse", "main"))
