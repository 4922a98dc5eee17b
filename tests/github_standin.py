"""A git repository with a remote, and a local stand-in for the GitHub REST API.

``repo`` (fixture): a checkout on ``main`` holding the shipped ``policies/champion.json``,
whose ``origin`` is a local bare repository. ``github`` (fixture): a real HTTP server on a
free port that records every call and, like GitHub, answers 422 when a pull request's head
branch is not on the remote (or 401/another status when told to).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeGitHub:
    """Records calls; answers ``status`` (201: a pull request, if the head is on ``bare``)."""

    bare: Path
    url: str = ""
    status: int = 201
    calls: list[Call] = field(default_factory=list)

    def answer(self, call: Call) -> tuple[int, dict[str, Any]]:
        if self.status == 401:
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        if self.status != 201:
            return self.status, {
                "message": "Validation Failed",
                "errors": [
                    {"resource": "PullRequest", "code": "custom", "message": "A pull request already exists"}
                ],
            }
        head = subprocess.run(
            [
                "git",
                "-C",
                str(self.bare),
                "rev-parse",
                "--verify",
                "--quiet",
                f"refs/heads/{call.body['head']}",
            ],
            capture_output=True,
            check=False,
        )
        if head.returncode != 0:
            return 422, {"message": "Validation Failed", "errors": [{"field": "head", "code": "invalid"}]}
        return 201, {"number": 7, "html_url": f"https://github.com/{REPOSITORY}/pull/7"}


@contextmanager
def serve_github(repo: Remote) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(repo.bare)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            call = Call("POST", self.path, dict(self.headers.items()), json.loads(self.rfile.read(length)))
            fake.calls.append(call)
            status, body = fake.answer(call)
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/api/v3"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
