"""A local stand-in for the GitHub REST API's pull requests, over a real bare git repository.

For the go-live replay (``symphony mvp3-validate``), where the learner's promotion must be
opened as a pull request, reviewed and merged without reaching github.com. It answers what
``learner.pull_request`` and a reviewer call, as GitHub documents them:

- ``POST /repos/{owner}/{repo}/pulls`` (``title``, ``head``, ``base``, ``body``): 201 with the
  pull request, or 422 when the head branch is not on the remote;
- ``GET /repos/{owner}/{repo}/pulls/{number}``: the pull request, with ``merged`` and
  ``merge_commit_sha``;
- ``PUT /repos/{owner}/{repo}/pulls/{number}/merge``: a real merge commit on the bare
  repository's base branch (``git merge-tree --write-tree``, ``commit-tree``, ``update-ref``),
  405 when the branches conflict.

Every call needs ``Authorization: Bearer <token>`` with the stand-in's token (401 otherwise),
and every call is recorded (``calls``) with its headers, the token masked.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_PULLS = re.compile(r"/repos/(?P<repository>[^/]+/[^/]+)/pulls(?:/(?P<number>\d+)(?P<merge>/merge)?)?")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class PullRequest:
    number: int
    title: str
    head: str
    base: str
    body: str
    merge_commit_sha: str | None = None

    def to_json(self, url: str) -> dict[str, Any]:
        return {
            "number": self.number,
            "html_url": f"{url}/pull/{self.number}",
            "state": "closed" if self.merge_commit_sha else "open",
            "title": self.title,
            "body": self.body,
            "head": {"ref": self.head},
            "base": {"ref": self.base},
            "merged": self.merge_commit_sha is not None,
            "merge_commit_sha": self.merge_commit_sha,
        }


@dataclass
class GitHubStandIn:
    bare: Path  # the remote the branches are pushed to
    repository: str
    token: str = field(repr=False)
    url: str = ""  # the API's base URL, once serving
    calls: list[Call] = field(default_factory=list)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        masked = {k: ("Bearer ***" if k.lower() == "authorization" else v) for k, v in headers.items()}
        with self._lock:
            self.calls.append(Call(method, path, masked, body))
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {
                    "message": "Bad credentials",
                    "documentation_url": "https://docs.github.com/rest",
                }
            route = _PULLS.fullmatch(path)
            if route is None or route["repository"] != self.repository:
                return 404, {"message": "Not Found"}
            number = int(route["number"]) if route["number"] else None
            if number is None and method == "POST":
                return self._open(body)
            pull = self.pulls.get(number or 0)
            if pull is None:
                return 404, {"message": "Not Found"}
            if method == "GET" and not route["merge"]:
                return 200, pull.to_json(self.web_url)
            if method == "PUT" and route["merge"]:
                return self._merge(pull)
            return 404, {"message": "Not Found"}

    @property
    def web_url(self) -> str:
        return f"{self.url}/{self.repository}"

    def _open(self, body: dict[str, Any]) -> tuple[int, Any]:
        head, base = str(body.get("head", "")), str(body.get("base", ""))
        missing = [name for name, ref in (("head", head), ("base", base)) if self._commit(ref) is None]
        if missing:
            return 422, {"message": "Validation Failed", "errors": [{"field": missing[0], "code": "invalid"}]}
        pull = PullRequest(
            len(self.pulls) + 1, str(body.get("title", "")), head, base, str(body.get("body", ""))
        )
        self.pulls[pull.number] = pull
        return 201, pull.to_json(self.web_url)

    def _merge(self, pull: PullRequest) -> tuple[int, Any]:
        if pull.merge_commit_sha:
            return 405, {"message": "Pull Request is not mergeable"}
        base, head = self._commit(pull.base), self._commit(pull.head)
        tree = self._git("merge-tree", "--write-tree", str(base), str(head))
        if tree.returncode != 0:
            return 405, {"message": "Pull Request is not mergeable"}
        message = f"Merge pull request #{pull.number} from {pull.head}\n\n{pull.title}"
        commit = self._git(
            "commit-tree", tree.stdout.split()[0], "-p", str(base), "-p", str(head), "-m", message
        ).stdout.strip()
        self._git("update-ref", f"refs/heads/{pull.base}", commit, str(base))
        pull.merge_commit_sha = commit
        return 200, {"sha": commit, "merged": True, "message": "Pull Request successfully merged"}

    def _commit(self, branch: str) -> str | None:
        found = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        return found.stdout.strip() if branch and found.returncode == 0 else None

    def _git(self, *args: str) -> subprocess.CompletedProcess[str]:
        identity = ("-c", "user.name=GitHub stand-in", "-c", "user.email=standin@localhost")
        return subprocess.run(
            ["git", *identity, "-C", str(self.bare), *args], capture_output=True, text=True, check=False
        )


@contextmanager
def serve_github(bare: Path, repository: str, token: str) -> Iterator[GitHubStandIn]:
    """The stand-in on a free local port (``url`` is its API base) until the block ends."""
    standin = GitHubStandIn(bare, repository, token)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length)) if length else {}
            except ValueError:
                body = None
            if not isinstance(body, dict):
                status, answer = 400, {"message": "Problems parsing JSON"}
            else:
                status, answer = standin.answer(self.command, self.path, dict(self.headers.items()), body)
            raw = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the calls are recorded; stderr is the run's progress

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
