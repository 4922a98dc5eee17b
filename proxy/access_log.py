"""The access log: one line per routed request, at INFO on the logger ``symphony.access``.

Its fields (``extra={"fields": ...}``, shown as ``key=value`` or, with ``LOG_FORMAT=json``, as the
line's keys; ``symphony.process_logging``): ``decision_id`` ("" when the request was refused
before a decision), ``app``, ``task``, ``stream``, ``arm`` (the arm that answered, else null),
``status`` (the HTTP status the client got; a stream's is its head's; 499 when the client went
away, 500 when something else interrupted the request), ``latency_ms`` (until the answer, a
stream's first chunk, or the refusal), ``fallbacks`` (each failed attempt in order: its ``arm``,
``status``, one of 429, 5xx, timeout or error, and ``http_status``) and, for a refusal of the
proxy's own, ``error`` (its code: ``quota_exhausted``, ``budget_exhausted``, …).

It is on the hot path: callers check ``enabled()`` first, so nothing is built when the logger is
off, a line is a plain dict (no models, no awaits), and it is written by
``symphony.process_logging.log_fields`` (the same line, without a logging call's machinery).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from proxy.attempts.attempt_loop import Tried
from proxy.routed_request import RoutedRequest
from symphony.clock import monotonic
from symphony.process_logging import log_fields

ACCESS = logging.getLogger("symphony.access")
CLIENT_CLOSED = 499  # nginx's status for a client that went away before its answer
INTERRUPTED = 500


def enabled() -> bool:
    return ACCESS.isEnabledFor(logging.INFO)


def interrupted_status(error: BaseException) -> int:
    return CLIENT_CLOSED if isinstance(error, asyncio.CancelledError) else INTERRUPTED


def log_request(
    routed: RoutedRequest,
    decision_id: str,
    status: int,
    started: float,
    *,
    served: str | None = None,
    tried: Sequence[Tried] = (),
    error: str | None = None,
    answered: float | None = None,
) -> None:
    """Log one request's line; ``started`` is its ``monotonic()`` start, ``answered`` when its answer
    was ready (by default now: a line logged after the answer went out gives the answer's time)."""
    log_line(
        routed.app,
        routed.task,
        decision_id,
        status,
        started,
        stream=routed.stream,
        served=served,
        tried=tried,
        error=error,
        answered=answered,
    )


def log_line(
    app: str,
    task: str,
    decision_id: str,
    status: int,
    started: float,
    *,
    stream: bool = False,
    served: str | None = None,
    tried: Sequence[Tried] = (),
    error: str | None = None,
    answered: float | None = None,
) -> None:
    """``log_request`` for a request that is no chat completion (an embedding)."""
    fields: dict[str, Any] = {
        "decision_id": decision_id,
        "app": app,
        "task": task,
        "stream": stream,
        "arm": served,
        "status": status,
        "latency_ms": round(((answered if answered is not None else monotonic()) - started) * 1000, 1),
        "fallbacks": [{"arm": t.arm.name, "status": t.status, "http_status": t.http_status} for t in tried],
    }
    if error is not None:
        fields["error"] = error
    log_fields(ACCESS, "request", fields)
