"""A git repository with a remote, and a local stand-in for GitHub's issues and releases.

``repo`` (fixture): a checkout on ``main`` holding the shipped ``policies/champion.json``,
whose ``origin`` is a local bare repository. ``github`` (fixture): ``cli.github_standin``'s
stand-in for the REST API over that remote, serving on a free port, recording every call.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


# --- issues, releases and release assets (evidence tickets) ---------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: Any  # parsed JSON, or the raw bytes of an upload


@dataclass
class GitHubIssuesStandIn:
    """GitHub's issues, releases and asset uploads as its REST API documents them, recorded.

    Every call needs ``Authorization: Bearer <TOKEN>`` (401 otherwise, as GitHub answers). A
    release asset is uploaded to the release's ``upload_url`` (GitHub's uploads host; here the
    same server under ``/uploads``); a second asset of the same name is 422 ``already_exists``.
    """

    url: str = ""
    calls: list[Recorded] = field(default_factory=list)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[str]] = field(default_factory=dict)
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    assets: dict[str, bytes] = field(default_factory=dict)

    def called(self, method: str, suffix: str) -> list[Recorded]:
        return [c for c in self.calls if c.method == method and c.path.endswith(suffix)]


@contextmanager
def serve_github_issues() -> Iterator[GitHubIssuesStandIn]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from simulator.background import BackgroundServer

    fake = GitHubIssuesStandIn()
    lock = threading.Lock()

    async def record(request: Request) -> tuple[Recorded, JSONResponse | None]:
        raw = await request.body()
        is_json = request.headers.get("content-type", "").startswith("application/json")
        call = Recorded(
            request.method,
            request.url.path,
            dict(request.headers),
            dict(request.query_params),
            json.loads(raw) if is_json and raw else raw,
        )
        with lock:
            fake.calls.append(call)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return call, JSONResponse({"message": "Bad credentials"}, 401)
        return call, None

    async def get_release(request: Request) -> Response:
        _, refused = await record(request)
        release = fake.releases.get(request.path_params["tag"])
        return refused or JSONResponse(release or {"message": "Not Found"}, 200 if release else 404)

    async def create_release(request: Request) -> Response:
        call, refused = await record(request)
        if refused:
            return refused
        owner, repo, tag = request.path_params["owner"], request.path_params["repo"], call.body["tag_name"]
        number = len(fake.releases) + 1
        release = {
            "id": number,
            "tag_name": tag,
            "html_url": f"https://github.com/{owner}/{repo}/releases/tag/{tag}",
            "upload_url": f"{fake.url}/uploads/repos/{owner}/{repo}/releases/{number}/assets{{?name,label}}",
        }
        fake.releases[tag] = release
        return JSONResponse(release, 201)

    async def upload(request: Request) -> Response:
        call, refused = await record(request)
        if refused:
            return refused
        name = call.query.get("name", "")
        if not name or request.headers.get("content-type") != "application/zip":
            return JSONResponse({"message": "Bad Request"}, 400)
        if name in fake.assets:
            errors = [{"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}]
            return JSONResponse({"message": "Validation Failed", "errors": errors}, 422)
        fake.assets[name] = call.body
        owner, repo = request.path_params["owner"], request.path_params["repo"]
        url = f"https://github.com/{owner}/{repo}/releases/download/evidence/{name}"
        return JSONResponse({"id": len(fake.assets), "name": name, "browser_download_url": url}, 201)

    async def create_issue(request: Request) -> Response:
        call, refused = await record(request)
        if refused:
            return refused
        if not isinstance(call.body, dict) or not call.body.get("title"):
            return JSONResponse({"message": "Validation Failed"}, 422)
        number = len(fake.issues) + 1
        owner, repo = request.path_params["owner"], request.path_params["repo"]
        fake.issues[number] = call.body
        url = f"https://github.com/{owner}/{repo}/issues/{number}"
        return JSONResponse({"number": number, "html_url": url}, 201)

    async def comment(request: Request) -> Response:
        call, refused = await record(request)
        if refused:
            return refused
        number = int(request.path_params["number"])
        if number not in fake.issues:
            return JSONResponse({"message": "Not Found"}, 404)
        fake.comments.setdefault(number, []).append(call.body["body"])
        return JSONResponse({"id": len(fake.comments[number]), "body": call.body["body"]}, 201)

    api = "/api/v3/repos/{owner}/{repo}"
    app = Starlette(
        routes=[
            Route(f"{api}/releases/tags/{{tag}}", get_release, methods=["GET"]),
            Route(f"{api}/releases", create_release, methods=["POST"]),
            Route("/uploads/repos/{owner}/{repo}/releases/{id}/assets", upload, methods=["POST"]),
            Route(f"{api}/issues", create_issue, methods=["POST"]),
            Route(f"{api}/issues/{{number}}/comments", comment, methods=["POST"]),
        ]
    )
    server = BackgroundServer(app).start()
    fake.url = server.url
    try:
        yield fake
    finally:
        server.stop()
