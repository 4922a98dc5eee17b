"""A daemon thread that runs a loop until ``stop()``: the engine's monitors and watchers.

A subclass names its thread and writes ``_run``, which waits on ``self._stop`` between
rounds (``while not self._stop.wait(interval): ...``) so that ``stop()`` ends it at once.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class BackgroundThread(ABC):
    thread_name = "background"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @abstractmethod
    def _run(self) -> None:
        """The loop; it returns once ``self._stop`` is set."""
