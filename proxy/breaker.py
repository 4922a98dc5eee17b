"""A circuit breaker per provider, with cooling for rate limits.

``failures`` consecutive failed attempts open the breaker for ``cooldown_s``; then
it is half-open and lets ONE trial attempt through: success closes it, failure
opens it again. A 429 that says when to retry (``retry-after``) also makes the
provider cool until then, whatever the state. Time is passed in (``now``, elapsed
seconds from ``symphony.clock.monotonic``), so the transitions are plain to test.

>>> breaker = Breaker(failures=2, cooldown_s=10.0)
>>> breaker.failure(0.0); breaker.failure(1.0); breaker.state(2.0)
'open'
>>> breaker.state(11.0), breaker.begin(11.0), breaker.begin(11.0)
('half_open', True, False)
>>> breaker.success(); breaker.state(11.5)
'closed'
"""

from __future__ import annotations

from typing import Literal

State = Literal["closed", "open", "half_open"]


class Breaker:
    def __init__(self, *, failures: int, cooldown_s: float) -> None:
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._failures = 0
        self._open_until: float | None = None  # set while open or half-open
        self._cool_until = 0.0
        self._trial = False  # a half-open trial is in flight

    def state(self, now: float) -> State:
        if self._open_until is None:
            return "closed"
        return "open" if now < self._open_until else "half_open"

    def cooling(self, now: float) -> bool:
        return now < self._cool_until

    def available(self, now: float) -> bool:
        """Whether an attempt may start now (without claiming the half-open trial)."""
        if self.cooling(now):
            return False
        state = self.state(now)
        return state == "closed" or (state == "half_open" and not self._trial)

    def begin(self, now: float) -> bool:
        """Claim the right to attempt now; in half-open only the first caller gets it."""
        if not self.available(now):
            return False
        if self.state(now) == "half_open":
            self._trial = True
        return True

    def retry_in(self, now: float) -> float:
        """Seconds until an attempt may start again (0 when it may now)."""
        waits = [self._cool_until - now]
        if self._open_until is not None:
            waits.append(self._open_until - now)
        return max(0.0, *waits)

    def success(self) -> None:
        self._failures = 0
        self._open_until = None
        self._trial = False

    def failure(self, now: float, *, retry_after_s: float | None = None) -> None:
        if retry_after_s is not None and retry_after_s > 0:
            self._cool_until = max(self._cool_until, now + retry_after_s)
        self._failures += 1
        if self._trial or self._failures >= self._threshold:
            self._open_until = now + self._cooldown_s
        self._trial = False

    def release(self) -> None:
        """The attempt ended saying nothing about the provider (client error, client gone)."""
        self._trial = False


class Breakers:
    """One ``Breaker`` per provider, made on first use."""

    def __init__(self, *, failures: int, cooldown_s: float) -> None:
        self._failures = failures
        self._cooldown_s = cooldown_s
        self._by_provider: dict[str, Breaker] = {}

    def __getitem__(self, provider: str) -> Breaker:
        breaker = self._by_provider.get(provider)
        if breaker is None:
            breaker = self._by_provider[provider] = Breaker(
                failures=self._failures, cooldown_s=self._cooldown_s
            )
        return breaker
