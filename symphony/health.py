"""``GET /health`` of the stack's parts: each answer names its part, and a check wants the part it asked.

An answer of 200 alone says that something listens on the port, not that it is the part a caller
started: a part that failed to bind (another process holds its port, or a second part was given the
same one) would pass for up while whatever else holds the port answered. So each part says which it
is, and ``answers_as`` takes nothing else for it.

>>> health_body("engine")
b'{"status":"ok","service":"engine"}'
>>> is_health_of(b'{"status":"ok","service":"proxy"}', "engine")
False
>>> is_health_of(b"<html>not json</html>", "engine")
False
"""

from __future__ import annotations

from typing import Literal

import httpx
import orjson

PartName = Literal["proxy", "sim", "engine", "scheduler"]


def health_fields(part: PartName) -> dict[str, str]:
    """The fields every part's ``/health`` answer starts with."""
    return {"status": "ok", "service": part}


def health_body(part: PartName) -> bytes:
    return orjson.dumps(health_fields(part))


def is_health_of(body: bytes, part: PartName) -> bool:
    """Whether ``body`` is ``part``'s own health answer."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(answer, dict) and answer.get("status") == "ok" and answer.get("service") == part


def answers_as(base_url: str, part: PartName, timeout: float) -> bool:
    """Whether ``part`` itself answers ``GET /health`` at ``base_url`` (no credentials in it)."""
    try:
        response = httpx.get(f"{base_url}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and is_health_of(response.content, part)
