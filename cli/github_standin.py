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
  405 when the branches conflict;
- ``POST /repos/{owner}/{repo}/releases`` (``tag_name``, ``target_commitish``, ``name``, ``body``,
  ``draft``): 201 with the release and its ``upload_url`` template; a tag not on the remote is
  made at ``target_commitish`` (the base branch by default), 422 when that does not exist either;
  ``GET /repos/{owner}/{repo}/releases/tags/{tag}``: the release, or 404;
- ``POST <upload_url>?name=NAME`` with the file's bytes: 201 with the asset (kept in ``assets``) and
  its ``browser_download_url``; 422 ``already_exists`` for a name the release holds;
- ``POST /repos/{owner}/{repo}/issues`` (``title``, ``body``, ``labels``) and
  ``POST /repos/{owner}/{repo}/issues/{number}/comments`` (``body``): 201, kept in ``issues``.

Every call needs ``Authorization: Bearer <token>`` with the stand-in's token (401 otherwise),
and every call is recorded (``calls``) with its headers, the token masked. ``fail_with`` set to
401, 403, 404 or 422 answers every call so, with GitHub's message for it: what a caller says to
an operator when GitHub refuses.
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
from urllib.parse import parse_qs

_PULLS = re.compile(r"/repos/(?P<repository>[^/]+/[^/]+)/pulls(?:/(?P<number>\d+)(?P<merge>/merge)?)?")
_RELEASES = re.compile(r"/repos/(?P<repository>[^/]+/[^/]+)/releases(?:/tags/(?P<tag>[^/]+))?")
_ISSUES = re.compile(r"/repos/(?P<repository>[^/]+/[^/]+)/issues(?:/(?P<number>\d+)/comments)?")
_ASSETS = re.compile(r"/uploads/repos/(?P<repository>[^/]+/[^/]+)/releases/(?P<id>\d+)/assets")
_DOCS = "https://docs.github.com/rest"
# GitHub's answers to a refused call (docs.github.com/rest, "Troubleshooting"), by status.
REFUSALS: dict[int, dict[str, Any]] = {
    401: {"message": "Bad credentials", "documentation_url": _DOCS},
    403: {"message": "Resource not accessible by personal access token", "documentation_url": _DOCS},
    404: {"message": "Not Found", "documentation_url": _DOCS},
    422: {
        "message": "Validation Failed",
        "errors": [{"resource": "PullRequest", "code": "custom", "message": "A pull request already exists"}],
        "documentation_url": _DOCS,
    },
}


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
    releases: dict[int, dict[str, Any]] = field(default_factory=dict)
    assets: dict[int, dict[str, bytes]] = field(default_factory=dict)  # by release id, then name
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # each with its "comments"
    base: str = "main"  # the default branch
    fail_with: int | None = None  # one of REFUSALS' statuses: every call is refused so
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def called(self, method: str, path: str) -> list[Call]:
        """The calls made with ``method`` to ``path`` (its query aside)."""
        return [call for call in self.calls if call.method == method and call.path.partition("?")[0] == path]

    @property
    def comments(self) -> dict[int, list[str]]:
        """Each issue's comments, by its number."""
        return {number: issue["comments"] for number, issue in self.issues.items()}

    @property
    def uploaded(self) -> dict[str, bytes]:
        """Every release's assets, by name."""
        return {name: content for files in self.assets.values() for name, content in files.items()}

    def answer(self, method: str, target: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        """``body``: the parsed JSON, or the bytes of an asset upload."""
        path, _, query = target.partition("?")
        masked = {k: ("Bearer ***" if k.lower() == "authorization" else v) for k, v in headers.items()}
        with self._lock:
            self.calls.append(Call(method, target, masked, body if isinstance(body, dict) else {}))
            if headers.get("Authorization") != f"Bearer {self.token}":
                return 401, REFUSALS[401]
            if self.fail_with is not None:
                return self.fail_with, REFUSALS[self.fail_with]
            if body is None:
                return 400, {"message": "Problems parsing JSON"}
            if (route := _ASSETS.fullmatch(path)) and method == "POST" and self._ours(route):
                return self._upload(int(route["id"]), parse_qs(query).get("name", [""])[0], body)
            if (route := _RELEASES.fullmatch(path)) and self._ours(route):
                return self._releases(method, route["tag"], body)
            if (route := _ISSUES.fullmatch(path)) and method == "POST" and self._ours(route):
                return self._issues(int(route["number"]) if route["number"] else None, body)
            if (route := _PULLS.fullmatch(path)) and self._ours(route):
                return self._pulls(method, route, body)
            return 404, {"message": "Not Found"}

    def _ours(self, route: re.Match[str]) -> bool:
        return route["repository"] == self.repository

    def _pulls(self, method: str, route: re.Match[str], body: dict[str, Any]) -> tuple[int, Any]:
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

    def _releases(self, method: str, tag: str | None, body: dict[str, Any]) -> tuple[int, Any]:
        if method == "GET" and tag is not None:
            found = next((r for r in self.releases.values() if r["tag_name"] == tag), None)
            return (200, found) if found else (404, {"message": "Not Found"})
        if method != "POST" or tag is not None:
            return 404, {"message": "Not Found"}
        tag = str(body.get("tag_name", ""))
        if not self._tagged(tag, str(body.get("target_commitish") or self.base)):
            return 422, {"message": "Validation Failed", "errors": [{"field": "tag_name", "code": "invalid"}]}
        number = len(self.releases) + 1
        release = {
            "id": number,
            "tag_name": tag,
            "name": body.get("name", tag),
            "body": body.get("body", ""),
            "draft": bool(body.get("draft")),
            "prerelease": bool(body.get("prerelease")),
            "html_url": f"{self.web_url}/releases/tag/{tag}",
            "upload_url": f"{self.url}/uploads/repos/{self.repository}/releases/{number}/assets"
            "{?name,label}",
        }
        self.releases[number] = release
        self.assets[number] = {}
        return 201, release

    def _tagged(self, tag: str, target: str) -> bool:
        """Whether ``tag`` is on the remote, made at ``target`` if it was not (as GitHub does)."""
        if not tag or self._git("check-ref-format", f"refs/tags/{tag}").returncode != 0:
            return False
        if self._git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}").returncode == 0:
            return True
        commit = self._commit(target)
        return commit is not None and self._git("tag", tag, commit).returncode == 0

    def _issues(self, number: int | None, body: dict[str, Any]) -> tuple[int, Any]:
        if number is None:
            if not body.get("title"):
                return 422, {
                    "message": "Validation Failed",
                    "errors": [{"field": "title", "code": "missing"}],
                }
            number = len(self.issues) + 1
            self.issues[number] = {**body, "comments": []}
            return 201, {"number": number, "html_url": f"{self.web_url}/issues/{number}"}
        issue = self.issues.get(number)
        if issue is None:
            return 404, {"message": "Not Found"}
        if not body.get("body"):
            return 422, {"message": "Validation Failed", "errors": [{"field": "body", "code": "missing"}]}
        issue["comments"].append(body["body"])
        return 201, {"id": len(issue["comments"]), "body": body["body"]}

    def _upload(self, release: int, name: str, content: Any) -> tuple[int, Any]:
        if release not in self.releases:
            return 404, {"message": "Not Found"}
        if not name or not isinstance(content, bytes):
            return 422, {"message": "Validation Failed", "errors": [{"field": "name", "code": "missing"}]}
        if name in self.assets[release]:
            errors = [{"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}]
            return 422, {"message": "Validation Failed", "errors": errors}
        self.assets[release][name] = content
        tag = self.releases[release]["tag_name"]
        url = f"{self.web_url}/releases/download/{tag}/{name}"
        return 201, {"name": name, "size": len(content), "state": "uploaded", "browser_download_url": url}

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
            raw = self.rfile.read(length) if length else b""
            status, answer = standin.answer(
                self.command, self.path, dict(self.headers.items()), self._body(raw)
            )
            encoded = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def _body(self, raw: bytes) -> Any:
            """An upload's bytes as they came; any other body parsed as JSON (None if it is not)."""
            if self.path.startswith("/uploads/"):
                return raw
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return None
            return body if isinstance(body, dict) else None

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
