"""What every adapter needs to map a provider's error answer: status class, retry hint, error body.

The canonical error body is OpenAI's ``{"error": {"message", "type", "param", "code"}}``,
so the ``openai`` SDK raises its own exception types; the ``type`` follows the HTTP
status (``error_type``), which is also what the Anthropic-format inbound endpoint maps
from, with its own table. ``error_body`` and ``error_type`` are the proxy's only ones:
``proxy.errors`` and ``proxy.api`` import them from here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from symphony.events import AttemptStatus

RETRY_AFTER = "retry-after"
RETRY_AFTER_MS = "retry-after-ms"

# HTTP status -> the canonical error type; one not listed: api_error from 500, else invalid_request_error.
ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}
# "6m0s", "1.5s", "20ms", "1h2m3s": the reset durations in OpenAI-style x-ratelimit-reset-* headers.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class MalformedAnswer(ValueError):
    """A provider's 2xx answer that is not what its wire format promises (count it as an error)."""


def attempt_status(http_status: int) -> AttemptStatus:
    if 200 <= http_status < 300:
        return "ok"
    if http_status == 429:
        return "429"
    if http_status >= 500:
        return "5xx"
    return "error"


def error_type(http_status: int, types: Mapping[int, str] = ERROR_TYPES) -> str:
    """The error ``type`` for an HTTP status in a wire format's table (the canonical one by default).

    >>> error_type(429), error_type(502), error_type(418)
    ('rate_limit_error', 'api_error', 'invalid_request_error')
    """
    if http_status in types:
        return types[http_status]
    return "api_error" if http_status >= 500 else "invalid_request_error"


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    """A canonical error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``"6m0s"``, ``"20ms"``) or a plain number; None if neither."""
    text = text.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The wait a provider asks for: ``retry-after-ms`` or ``retry-after`` (seconds).

    An HTTP-date ``retry-after`` is not read: no provider in the catalog sends one,
    and turning it into a wait would need the wall clock here.
    """
    millis = headers.get(RETRY_AFTER_MS)
    if millis is not None:
        seconds = parse_duration(millis)
        if seconds is not None:
            return seconds / 1000
    value = headers.get(RETRY_AFTER)
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object, or None when it is not one."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def describe(body: bytes, http_status: int) -> str:
    """A readable message for an error body of unknown shape (truncated)."""
    text = body[:500].decode("utf-8", "replace").strip()
    return text or f"HTTP {http_status} with an empty body"
