"""When ``symphony up`` restarts a part that died, and when it gives up on it.

Restarts back off exponentially: the first within a window waits
``RESTART_FIRST_DELAY_S``, each further one twice as long, capped at
``RESTART_MAX_DELAY_S``. A part that dies more than ``RESTARTS_PER_WINDOW`` times
within ``RESTART_WINDOW_S`` cannot stay up: the supervisor gives up on it. Deaths
older than the window are forgotten, so a part that has run well for a while
starts again from the shortest delay.

Pure logic: the caller passes the (monotonic) time of each death.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

RESTART_FIRST_DELAY_S = 0.5
RESTART_MAX_DELAY_S = 30.0
RESTARTS_PER_WINDOW = 5
RESTART_WINDOW_S = 300.0


@dataclass(frozen=True)
class RestartPolicy:
    first_delay: float = RESTART_FIRST_DELAY_S
    max_delay: float = RESTART_MAX_DELAY_S
    restarts_per_window: int = RESTARTS_PER_WINDOW
    window: float = RESTART_WINDOW_S

    def delay(self, attempt: int) -> float:
        """The wait before restart number ``attempt`` (1, 2, …) within one window."""
        return min(self.max_delay, self.first_delay * 2.0 ** min(attempt - 1, 64))


@dataclass(frozen=True)
class Restart:
    attempt: int  # 1 for the first restart within the window
    delay: float  # seconds to wait before it


@dataclass
class RestartHistory:
    """One part's recent restarts, and the decision after its next death."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    restarts: deque[float] = field(default_factory=deque)  # when each recent restart was decided

    def after_death(self, now: float) -> Restart | None:
        """Record a death at ``now``: the restart to make, or None to give up on the part."""
        while self.restarts and now - self.restarts[0] >= self.policy.window:
            self.restarts.popleft()
        if len(self.restarts) >= self.policy.restarts_per_window:
            return None
        self.restarts.append(now)
        attempt = len(self.restarts)
        return Restart(attempt, self.policy.delay(attempt))
