"""A file the proxy serves again within a second of a change, without a restart.

A task checks the file's modification time and size every ``interval_s``; when they
change it loads the file (``load``, which validates it) and hands the result to
``on_change``. A file that does not load (half written, invalid) is said once, and what
is being served keeps serving. Requests never touch the file: they read what
``on_change`` installed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from proxy.periodic import Periodic

log = logging.getLogger(__name__)

T = TypeVar("T")


class WatchedFile(Generic[T]):
    def __init__(
        self,
        what: str,
        path: Path,
        load: Callable[[Path], T],
        on_change: Callable[[T], None],
        *,
        interval_s: float = 1.0,
    ) -> None:
        """``what`` names the file in the log ("champion policy", "catalog")."""
        self._what = what
        self.path = path
        self._load = load
        self._on_change = on_change
        self._seen = self._stamp()
        self._poll = Periodic(f"symphony-{what.replace(' ', '-')}-file", interval_s, self._check)

    def start(self) -> None:
        self._poll.start()

    async def close(self) -> None:
        await self._poll.close()

    def check(self) -> None:
        """Load the file if it changed since the last look; serve it if it is valid."""
        stamp = self._stamp()
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            loaded = self._load(self.path)
        except (OSError, ValueError) as exc:
            log.warning("%s %s did not load (%s); the current one keeps serving", self._what, self.path, exc)
            return
        self._on_change(loaded)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def _check(self) -> None:
        self.check()
