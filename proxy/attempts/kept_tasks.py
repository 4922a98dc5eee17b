"""Work started from synchronous code (a stream's end, a timer): each task kept until it is done, so it
is not collected half way, and an error it ends with logged then rather than by asyncio whenever the
task is collected. Expected failures (Redis away) are the work's own to handle; what reaches here is a
bug."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any


class KeptTasks:
    def __init__(self, log: logging.Logger, failed: str) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = log
        self._failed = failed  # what the log says when a task ends with an error

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._log.error(self._failed, exc_info=error)

    async def wait(self, timeout_s: float | None = None) -> None:
        """Wait for the tasks under way (at most ``timeout_s``); their errors are logged as they end."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
