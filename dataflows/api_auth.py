"""The control plane's admin boundary: who may call which route of the engine's HTTP API.

Three roles, each with its own token: ``admin`` may call every route; ``analyst`` may
only read (``/query``, which runs read-only in ClickHouse, ``/metrics``, ``/learner/metrics``,
``/traces/<id>`` and the console, ``/console`` and below); ``spans`` (the proxy's) may only post
spans (``/v1/traces``) and read nothing. On the console's paths a 401 asks for HTTP Basic, so a
browser prompts for the token. ``/health`` is open. A token comes as
``Authorization: Bearer <token>``, or as the
password of HTTP Basic credentials (``http://analyst:<token>@host`` in a URL). A missing or
wrong token is a 401, a role calling a route it may not is a 403. Tokens are
compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health"})
ANALYST_PATHS = frozenset({"/query", "/metrics", "/learner/metrics", "/console"})
SPANS_PATHS = frozenset({"/v1/traces"})
# role -> the paths it may call (admin: every path)
ALLOWED = {"analyst": ANALYST_PATHS, "spans": SPANS_PATHS}
# role -> path prefixes it may also call (a trace's view: /traces/<id>)
ALLOWED_PREFIXES: dict[str, tuple[str, ...]] = {"analyst": ("/traces/", "/console/"), "spans": ()}
# A browser asks for credentials (HTTP Basic, any user name, the token as password) on the console's pages.
CONSOLE_PREFIX = "/console"


@dataclass(frozen=True)
class Tokens:
    admin: str
    analyst: str | None = None
    spans: str | None = None

    def role(self, presented: str) -> str | None:
        # Bytes, not str: compare_digest refuses non-ASCII text, and any header byte may arrive.
        given = presented.encode("utf-8", "surrogateescape")
        found = None
        for role, token in (("admin", self.admin), ("analyst", self.analyst), ("spans", self.spans)):
            # Every token compared, so the time taken does not tell which role a guess came near.
            if token is not None and hmac.compare_digest(given, token.encode()) and found is None:
                found = role
        return found


class TokenGuard:
    """ASGI middleware: every route but ``/health`` needs a role that may call it."""

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self._app = app
        self._tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        role = self._tokens.role(_bearer(scope))
        if role is None:
            challenge = (
                b'Basic realm="Symphony console"' if scope["path"].startswith(CONSOLE_PREFIX) else b"Bearer"
            )
            await _refuse(
                send, 401, "a control-plane token is required: Authorization: Bearer <token>", challenge
            )
        elif (
            role in ALLOWED
            and scope["path"] not in ALLOWED[role]
            and not scope["path"].startswith(ALLOWED_PREFIXES[role])
        ):
            allowed = ", ".join(sorted(ALLOWED[role]))
            what = "read" if role == "analyst" else "post spans"
            await _refuse(send, 403, f"the {role} role may only {what} ({allowed}), not {scope['path']}")
        else:
            await self._app(scope, receive, send)


def _bearer(scope: Scope) -> str:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            kind, _, credentials = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer":
                return credentials.strip()
            if kind.lower() == "basic":
                return _basic_password(credentials.strip())
    return ""


def _basic_password(encoded: str) -> str:
    try:
        return base64.b64decode(encoded, validate=True).decode().partition(":")[2]
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
        return ""


async def _refuse(send: Send, status: int, message: str, challenge: bytes = b"Bearer") -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", challenge))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
