"""A step run every few seconds in a task of the proxy's event loop, until ``close()``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from symphony.cancellation import cancel_requested


class Periodic:
    def __init__(self, name: str, interval_s: float, step: Callable[[], Awaitable[None]]) -> None:
        self._name = name
        self._interval_s = interval_s
        self._step = step
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while not cancel_requested():  # a step may have lost ``close()``'s cancel (symphony.cancellation)
            await asyncio.sleep(self._interval_s)
            await self._step()
