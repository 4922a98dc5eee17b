"""A local stand-in for Jira Cloud's REST API v3 (issues, attachments, comments) that records calls.

As Jira documents them: every call needs HTTP Basic authentication (account e-mail and API
token; 401 otherwise); ``POST /rest/api/3/issue`` wants ``fields`` with a project key, a
summary, an issue type and a description in Atlassian Document Format (400 with
``errors`` otherwise); ``POST /rest/api/3/issue/{key}/attachments`` refuses a request without
``X-Atlassian-Token: no-check`` (403, "XSRF check failed") and wants the multipart field
``file``; ``POST /rest/api/3/issue/{key}/comment`` wants an ADF ``body``.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from simulator.background import BackgroundServer

EMAIL = "oncall@example.com"
TOKEN = "ATATT3xFfGF0jiraStandInToken0123456789"
PROJECT = "OPS"


@dataclass
class JiraCall:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # JSON, or {field name: (filename, bytes)} of a multipart upload


@dataclass
class JiraStandIn:
    url: str = ""
    calls: list[JiraCall] = field(default_factory=list)
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    attachments: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def called(self, method: str, suffix: str) -> list[JiraCall]:
        return [c for c in self.calls if c.method == method and c.path.endswith(suffix)]


def multipart_files(content_type: str, raw: bytes) -> dict[str, tuple[str, bytes]]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    files = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename() or ""
        files[str(name)] = (filename, part.get_payload(decode=True))
    return files


def is_adf(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("type") == "doc" and doc.get("version") == 1 and "content" in doc


@contextmanager
def serve_jira() -> Iterator[JiraStandIn]:
    fake = JiraStandIn()
    lock = threading.Lock()
    expected_auth = "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()

    async def record(request: Request) -> tuple[JiraCall, Response | None]:
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            body: Any = multipart_files(content_type, raw)
        else:
            body = json.loads(raw) if raw else None
        call = JiraCall(request.method, request.url.path, dict(request.headers), body)
        with lock:
            fake.calls.append(call)
        if request.headers.get("authorization") != expected_auth:
            return call, PlainTextResponse("Client must be authenticated to access this resource.", 401)
        return call, None

    async def create_issue(request: Request) -> Response:
        call, refused = await record(request)
        if refused:
            return refused
        fields = (call.body or {}).get("fields", {})
        errors = {}
        if fields.get("project", {}).get("key") != PROJECT:
            errors["project"] = "valid project is required"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if not fields.get("issuetype", {}).get("name"):
            errors["issuetype"] = "valid issue type is required"
        if not is_adf(fields.get("description")):
            errors["description"] = (
                "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
            )
        if errors:
            return JSONResponse({"errorMessages": [], "errors": errors}, 400)
        key = f"{PROJECT}-{len(fake.issues) + 1}"
        fake.issues[key] = fields
        return JSONResponse(
            {"id": str(10000 + len(fake.issues)), "key": key, "self": f"{fake.url}/rest/api/3/issue/{key}"},
            201,
        )

    async def attach(request: Request) -> Response:
        call, refused = await record(request)
        if refused:
            return refused
        if request.headers.get("x-atlassian-token") != "no-check":
            return PlainTextResponse("XSRF check failed", 403)
        key = request.path_params["key"]
        if key not in fake.issues:
            return JSONResponse(
                {"errorMessages": ["Issue does not exist or you do not have permission to see it."]}, 404
            )
        if not isinstance(call.body, dict) or "file" not in call.body:
            return JSONResponse({"errorMessages": ["no file field"]}, 400)
        filename, data = call.body["file"]
        fake.attachments.setdefault(key, []).append((filename, data))
        number = sum(len(v) for v in fake.attachments.values())
        content = f"{fake.url}/rest/api/3/attachment/content/{number}"
        return JSONResponse(
            [{"id": str(number), "filename": filename, "size": len(data), "content": content}]
        )

    async def comment(request: Request) -> Response:
        call, refused = await record(request)
        if refused:
            return refused
        key = request.path_params["key"]
        if key not in fake.issues:
            return JSONResponse({"errorMessages": ["Issue does not exist"]}, 404)
        if not is_adf((call.body or {}).get("body")):
            return JSONResponse({"errorMessages": ["Comment body is not valid!"]}, 400)
        fake.comments.setdefault(key, []).append(call.body["body"])
        return JSONResponse({"id": str(len(fake.comments[key])), "body": call.body["body"]}, 201)

    app = Starlette(
        routes=[
            Route("/rest/api/3/issue", create_issue, methods=["POST"]),
            Route("/rest/api/3/issue/{key}/attachments", attach, methods=["POST"]),
            Route("/rest/api/3/issue/{key}/comment", comment, methods=["POST"]),
        ]
    )
    server = BackgroundServer(app).start()
    fake.url = server.url
    try:
        yield fake
    finally:
        server.stop()
