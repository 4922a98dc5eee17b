"""Waiting in a test for what another thread or process does: polled, bounded, failing the test when late."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object],
    timeout_s: float = 10.0,
    *,
    every_s: float = 0.05,
) -> None:
    """Return once ``condition()`` is true; fail the test if it is not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not met within {timeout_s:g} s: {condition}")
        time.sleep(every_s)
