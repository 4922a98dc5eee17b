"""Read ClickHouse through the engine's HTTP query API (the engine owns the chDB directory).

>>> result = query("http://127.0.0.1:8702", "SELECT count() FROM decisions FINAL")  # doctest: +SKIP
>>> result.columns, result.rows  # doctest: +SKIP
(['count()'], [[42]])
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from symphony import clock
from symphony.health import answers_as


class EngineError(Exception):
    """The engine refused a query or could not be reached; the message says which and why."""


class EngineUnavailable(EngineError):
    """Nothing answered at the engine's URL (not started yet, stopped, or a network fault)."""


class EngineUnauthorized(EngineError):
    """The engine refused the token sent, or its absence (401, 403); ``role``: the URL's user, if any."""

    def __init__(self, message: str, role: str | None) -> None:
        super().__init__(message)
        self.role = role


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]

    def scalar(self) -> Any:
        """The first column of the first row (``count()`` and friends)."""
        if not self.rows or not self.rows[0]:
            raise EngineError(f"query returned no value (columns {self.columns})")
        return self.rows[0][0]


def split_credentials(engine_url: str) -> tuple[str, dict[str, str]]:
    """``http://role:token@host:port`` -> the URL without them, and the bearer header to send."""
    parts = urlsplit(engine_url.rstrip("/"))
    if parts.password is None:
        return engine_url.rstrip("/"), {}
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, {"authorization": f"Bearer {unquote(parts.password)}"}


def query(engine_url: str, sql: str, timeout: float = 10) -> QueryResult:
    """Run read-only SQL through the engine; raise ``EngineError`` with ClickHouse's message on failure.

    A token in the URL (``http://analyst:<token>@host:port``) is sent as a bearer token and
    never appears in an error message.
    """
    body = _call(engine_url, "POST", "/query", timeout, json={"sql": sql})
    return QueryResult(columns=list(body["columns"]), rows=[list(row) for row in body["rows"]])


def learner_metrics(engine_url: str, days: int, resamples: int, timeout: float = 300) -> dict[str, Any]:
    """The engine's off-policy evaluation of the challenger over the last ``days`` days."""
    params = {"days": days, "resamples": resamples}
    return _call(engine_url, "GET", "/learner/metrics", timeout, params=params)


def capture_evidence(engine_url: str, request: dict[str, str], timeout: float = 120) -> dict[str, Any]:
    """Ask the engine (admin) for a decision's evidence bundle and tickets; the outcome as it answers."""
    return _call(engine_url, "POST", "/evidence/capture", timeout, json=request)


def _call(engine_url: str, method: str, path: str, timeout: float, **kwargs: Any) -> dict[str, Any]:
    url, headers = split_credentials(engine_url)
    try:
        response = httpx.request(method, f"{url}{path}", headers=headers, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        raise EngineUnavailable(
            f"engine at {url} did not answer ({exc.__class__.__name__}); "
            "start the stack with `just up` (or `symphony engine`), or set ENGINE_PORT"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        detail = body.get("error") if isinstance(body, dict) else response.text[:500]
        what = "query" if path == "/query" else path.lstrip("/")
        message = f"{what} failed ({response.status_code}): {detail}"
        if response.status_code in (401, 403):
            raise EngineUnauthorized(message, urlsplit(engine_url).username)
        raise EngineError(message)
    return body


def is_ready(engine_url: str, timeout: float = 1.0) -> bool:
    """Whether the engine itself answers at ``engine_url`` (not another process on its port)."""
    return answers_as(split_credentials(engine_url)[0], "engine", timeout)


def wait_until_ready(engine_url: str, timeout: float = 30.0, interval: float = 0.1) -> None:
    """Wait until the engine answers ``/health``; raise ``EngineError`` after ``timeout`` seconds."""
    deadline = clock.monotonic() + timeout
    while not is_ready(engine_url):
        if clock.monotonic() > deadline:
            raise EngineUnavailable(
                f"engine at {split_credentials(engine_url)[0]} not ready after {timeout:g}s"
            )
        time.sleep(interval)


def wait_for_count(
    engine_url: str, sql: str, expected: int, timeout: float = 30.0, interval: float = 0.1
) -> int:
    """Poll a query returning one number until it reaches ``expected``; return the value it reached.

    Raises ``EngineError`` with the last value seen after ``timeout`` seconds. Query
    errors while the engine starts (connection refused) are retried until then.
    """
    deadline = clock.monotonic() + timeout
    last: int | str | None = None
    while True:
        try:
            last = int(query(engine_url, sql, timeout=max(1.0, min(10.0, timeout))).scalar())
            if last >= expected:
                return last
        except EngineUnavailable as exc:
            last = str(exc)
        if clock.monotonic() > deadline:
            raise EngineError(f"{sql!r} reached {last!r}, not {expected}, within {timeout:g}s")
        time.sleep(interval)
