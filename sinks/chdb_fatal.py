"""Telling when the embedded ClickHouse (chDB) is in its fatal state, and noticing it within a second.

chDB installs ClickHouse's handlers for the fatal signals (SIGSEGV, SIGBUS,
SIGABRT, SIGILL, SIGFPE, ...) in the whole process, whichever library faults.
The handler marks the engine crashed, and from then on every query on every
handle fails with ``Code: 236. DB::Exception: The server is shutting down due to
a fatal error. (ABORTED)``. There is no way back: the thread that faulted sleeps
in the handler (for minutes; chDB has no signal-listener thread to release it)
and then the process dies. Retrying is pointless, and the thread that would see
the error may be the one that is stuck, so the engine also probes on a handle of
its own (``FatalWatch``) and exits as soon as either sees the state.

A ClickHouse *server* answering this is shutting down and will come back; only
the embedded engine, which dies with this process, needs the engine to restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import clickhouse_connect

from symphony.background_thread import BackgroundThread

log = logging.getLogger(__name__)

FATAL_CODE = 236  # ABORTED
FATAL_TEXT = "shutting down due to a fatal error"
PROBE_EVERY_S = 1.0


class ClickHouseFatal(Exception):
    """The embedded ClickHouse is in its fatal state; only a new process can use it again."""


def fatal_message(exc: BaseException) -> str | None:
    """ClickHouse's words if ``exc`` (or an exception in its chain) is chDB's fatal-state error, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        if FATAL_TEXT in text and f"Code: {FATAL_CODE}" in text:
            start = text.find(f"Code: {FATAL_CODE}")
            return " ".join(text[start:].split())[:300]
        current = current.__cause__ or current.__context__
    return None


class FatalWatch(BackgroundThread):
    """A thread that runs ``SELECT 1`` on its own chDB handle every ``interval`` seconds.

    ``on_fatal`` is called once, with ClickHouse's message, when the probe gets the
    fatal-state error. Other errors are not its business (the sink and the API see
    and report them). The handle is its own, so neither the writer's lock nor a
    stuck thread can hold the probe up.
    """

    thread_name = "chdb-fatal-watch"

    def __init__(
        self,
        dsn: str,
        on_fatal: Callable[[str], None],
        interval: float = PROBE_EVERY_S,
        open_handle: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__()
        self._dsn = dsn
        self._on_fatal = on_fatal
        self._interval = interval
        self._open = open_handle or (lambda dsn: clickhouse_connect.get_client(dsn=dsn))

    def _run(self) -> None:
        handle: Any = None
        try:
            while not self._stop.wait(self._interval):
                try:
                    if handle is None:
                        handle = self._open(self._dsn)
                    handle.command("SELECT 1")
                except Exception as exc:  # every failure is looked at; only the fatal state stops the engine
                    message = fatal_message(exc)
                    if message is not None:
                        self._on_fatal(message)
                        return
                    log.debug("chDB probe failed: %s", exc)
        finally:
            if handle is not None:
                try:
                    handle.close()
                except Exception:  # closing a probe handle must never fail the engine's shutdown
                    log.debug("closing the chDB probe handle failed", exc_info=True)
