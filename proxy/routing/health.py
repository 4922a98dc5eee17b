"""Provider health: outlier ejection over a sliding window, cooling on 429s, an ejection cap, a panic rule.

Pure and clock-driven: every call takes ``now`` (seconds from ``symphony.clock.monotonic``),
so a test can walk the rules through time. The pool is the gateway's arms
(``provider/model``); capacity shares are counted in arms.

- **Window.** Each provider's finished attempts land in a sliding window of ``window_s``
  (ten buckets): attempts, failures (5xx, errors, timeouts), timeouts, 429s.
- **Ejection.** A provider is ejected when, within the window, ``failures`` or more
  attempts failed and they are at least ``failure_rate`` of its attempts; or when
  ``timeouts`` or more timed out and they are at least ``failure_rate`` of its attempts
  (slowness is learned after a few requests). It stays out ``cooldown_s``, doubled with
  each consecutive ejection (at most ``MAX_BACKOFF`` times); then one trial attempt is let
  through: success restores it with a fresh window, failure ejects it again.
- **Cap.** No ejection makes the ejected share of the pool exceed ``max_ejected_share``;
  a provider it would have ejected keeps serving at a lowered traffic share.
- **429.** A 429 whose rate-limit headers show an exhausted limit cools what those headers
  describe (the model) until the ``retry-after`` it gave. 429s that make up at least
  ``failure_rate`` of a provider's window (``failures`` or more) cool the whole provider
  (its key) for the ``retry-after``. Fewer 429s only lower the provider's traffic share.
- **Traffic share.** Once a provider has ``failures`` attempts in the window, its weight
  is ``1 - (failures + 429s) / attempts``, at least ``MIN_WEIGHT``; the router multiplies
  the policy's distribution by it.
- **Panic.** When fewer than ``panic_share`` of the pool's arms are available, cooling is
  ignored: every arm that is not ejected serves again (the cap keeps enough of those).
- **Lagging.** A provider with an attempt still waiting for its first byte past half of
  that attempt's limit is lagging: the attempt loop tries it after the other arms, so
  a request that fell back from one hanging provider does not walk into the next one
  while its timeouts are still on their way. A fallback also passes over a provider that has
  not answered within the window (not ``proven``) while ``UNPROVEN_PROBES`` attempts wait on
  it (``probed``): a burst falling back together probes it rather than all waiting out its
  limit at once. (A first attempt goes to the arm the policy drew, so what was served is what
  was logged.) After a timeout, the loop also prefers proven providers.

>>> health = Health(Rules(window_s=10, failures=2, failure_rate=0.5, timeouts=2, cooldown_s=5,
...                       max_ejected_share=0.5, panic_share=0.3), [("a", "a/x"), ("b", "b/y")])
>>> health.record("a", "a/x", "failure", 0.0); health.record("a", "a/x", "failure", 0.1)
>>> health.available("a", "a/x", 0.2), round(health.retry_in("a", "a/x", 0.2), 3)  # out until 0.1 + 5
(False, 4.9)
>>> health.record("b", "b/y", "timeout", 0.3); health.record("b", "b/y", "timeout", 0.4)
>>> health.available("b", "b/y", 0.5)  # ejecting b too would leave nothing: over the cap
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from symphony.settings import Settings

Outcome = Literal["ok", "failure", "timeout", "throttled", "neutral"]

BUCKETS = 10
MAX_BACKOFF = 8  # the longest ejection is this many cooldowns
MIN_WEIGHT = 0.05  # a provider's traffic share is never cut below this factor
DEFAULT_RETRY_AFTER_S = 1.0  # a 429 that cools but names no wait
# A provider with no answer in the window takes this many fallbacks waiting at once; further
# fallbacks try it last: a burst probes it instead of all waiting out its first-token limit.
UNPROVEN_PROBES = 2


@dataclass(frozen=True, slots=True)
class Rules:
    window_s: float
    failures: int  # the minimum volume: failures (or 429s) in the window before the rate counts
    failure_rate: float
    timeouts: int
    cooldown_s: float
    max_ejected_share: float
    panic_share: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        return cls(
            window_s=settings.breaker_window_ms / 1000,
            failures=settings.breaker_failures,
            failure_rate=settings.breaker_failure_rate,
            timeouts=settings.breaker_timeouts,
            cooldown_s=settings.breaker_cooldown_ms / 1000,
            max_ejected_share=settings.breaker_max_ejected_share,
            panic_share=settings.breaker_panic_share,
        )


class _Window:
    """Counts per bucket: attempts, failures, timeouts, throttled (429)."""

    __slots__ = ("_bucket_s", "_counts", "_stamps")

    def __init__(self, window_s: float) -> None:
        self._bucket_s = window_s / BUCKETS
        self._stamps = [-1] * BUCKETS
        self._counts = [[0, 0, 0, 0] for _ in range(BUCKETS)]

    def add(self, now: float, failure: bool, timeout: bool, throttled: bool) -> None:
        index = int(now / self._bucket_s)
        slot = index % BUCKETS
        counts = self._counts[slot]
        if self._stamps[slot] != index:
            self._stamps[slot] = index
            counts[:] = [0, 0, 0, 0]
        counts[0] += 1
        counts[1] += failure
        counts[2] += timeout
        counts[3] += throttled

    def totals(self, now: float) -> tuple[int, int, int, int]:
        index = int(now / self._bucket_s)
        sums = [0, 0, 0, 0]
        for stamp, counts in zip(self._stamps, self._counts, strict=True):
            if index - BUCKETS < stamp <= index:
                for i in range(4):
                    sums[i] += counts[i]
        return sums[0], sums[1], sums[2], sums[3]

    def clear(self) -> None:
        for counts in self._counts:
            counts[:] = [0, 0, 0, 0]


class _Provider:
    __slots__ = (
        "arms",
        "bad_until",
        "ejected_until",
        "ejections",
        "last_ok",
        "reason",
        "trial",
        "waiting",
        "window",
    )

    def __init__(self, arms: int, window_s: float) -> None:
        self.arms = arms
        self.window = _Window(window_s)
        self.ejected_until: float | None = None  # set while ejected or on trial
        self.ejections = 0  # consecutive ejections, for the backoff
        self.trial = False  # the trial attempt after an ejection is in flight
        self.bad_until = 0.0  # the window holds a failure or a 429 until then
        self.reason = ""
        self.last_ok = -math.inf
        self.waiting: dict[int, float] = {}  # attempt -> when it lags (no first byte by then)


class Health:
    def __init__(self, rules: Rules, arms: Iterable[tuple[str, str]]) -> None:
        """``arms``: the pool as (provider, arm name) pairs."""
        self.rules = rules
        self._pool = 0
        self._providers: dict[str, _Provider] = {}
        self.reshape(arms)
        self._cooled: dict[str, tuple[float, str]] = {}  # provider or arm -> (until, why)
        self._ejected: set[str] = set()
        self._bad_until = 0.0  # some provider's window holds a failure or a 429 until then

    def reshape(self, arms: Iterable[tuple[str, str]]) -> None:
        """A new pool (the catalog changed): providers kept keep what was seen of them.

        A provider that left the pool keeps its state with no arms, so an attempt still on
        its way to it finishes as any other.
        """
        counts: dict[str, int] = {}
        for provider, _arm in arms:
            counts[provider] = counts.get(provider, 0) + 1
        for name, state in self._providers.items():
            state.arms = counts.get(name, 0)
        for name, count in counts.items():
            if name not in self._providers:
                self._providers[name] = _Provider(count, self.rules.window_s)
        self._pool = sum(counts.values())

    # -- reading --

    def quiet(self, now: float) -> bool:
        """Nothing ejected, cooled or lowered: every arm serves at full share (the healthy fast path)."""
        return not self._ejected and not self._cooled and now >= self._bad_until

    def panic(self, now: float) -> bool:
        """Fewer than ``panic_share`` of the pool's arms are available: cooling is ignored."""
        if not self._cooled:
            return False
        cooled_arms = [key for key in list(self._cooled) if "/" in key and self._cooling(key, now)]
        out = len(cooled_arms)
        for name, provider in self._providers.items():
            if self._ejected_now(provider, now) or self._cooling(name, now):
                out += provider.arms - sum(arm.startswith(f"{name}/") for arm in cooled_arms)
        return bool(self._cooled) and self._pool - out < self.rules.panic_share * self._pool

    def available(self, provider: str, arm: str, now: float) -> bool:
        """Whether ``arm`` may be attempted now (without claiming a trial)."""
        state = self._providers[provider]
        if state.ejected_until is not None and (now < state.ejected_until or state.trial):
            return False
        if not self._cooled:
            return True
        cooled = self._cooling(provider, now) or self._cooling(arm, now)
        return not cooled or self.panic(now)

    def retry_in(self, provider: str, arm: str, now: float) -> float:
        """Seconds until ``arm`` may be attempted again (0 when it may now)."""
        state = self._providers[provider]
        waits = [0.0]
        if state.ejected_until is not None:
            waits.append(state.ejected_until - now)
        for key in (provider, arm):
            cooled = self._cooled.get(key)
            if cooled is not None:
                waits.append(cooled[0] - now)
        return max(waits)

    def cooled_only(self, provider: str, arm: str, now: float) -> bool:
        """Out only because a 429 cooled it (not ejected)."""
        state = self._providers[provider]
        ejected = state.ejected_until is not None and (now < state.ejected_until or state.trial)
        return not ejected and (self._cooling(provider, now) or self._cooling(arm, now))

    def why(self, provider: str, arm: str, now: float) -> str:
        """Why ``arm`` is out, in words: which limit, from whom."""
        state = self._providers[provider]
        if state.ejected_until is not None and (now < state.ejected_until or state.trial):
            return state.reason
        for key in (arm, provider):
            cooled = self._cooled.get(key)
            if cooled is not None and now < cooled[0]:
                return cooled[1]
        return f"{provider} is available"

    def weights(self, providers: Sequence[str], now: float) -> tuple[float, ...] | None:
        """A traffic-share factor per entry of ``providers``; None when every factor is 1."""
        if now >= self._bad_until:
            return None
        factors = tuple(self._weight(self._providers[p], now) for p in providers)
        return None if all(f == 1.0 for f in factors) else factors

    def breakers(self, now: float) -> dict[str, tuple[str, str]]:
        """Each provider of the pool's breaker and why: ``closed``; ``open`` (ejected, in its cooldown);
        ``half-open`` (the cooldown ended: one trial attempt decides). Read off the request path."""
        states: dict[str, tuple[str, str]] = {}
        for name, state in self._providers.items():
            if state.arms == 0:  # left the pool
                continue
            if state.ejected_until is None:
                states[name] = ("closed", "")
            elif now < state.ejected_until:
                states[name] = ("open", state.reason)
            else:
                states[name] = ("half-open", state.reason)
        return states

    def lagging(self, provider: str, now: float) -> bool:
        """An attempt on ``provider`` has waited past half its limit for a first byte."""
        waiting = self._providers[provider].waiting
        return bool(waiting) and min(waiting.values()) <= now

    def probed(self, provider: str, now: float) -> bool:
        """``provider`` has not answered within the window and ``UNPROVEN_PROBES`` attempts wait on it."""
        waiting = self._providers[provider].waiting
        return len(waiting) >= UNPROVEN_PROBES and not self.proven(provider, now)

    def proven(self, provider: str, now: float) -> bool:
        """``provider`` answered an attempt within the window."""
        return now - self._providers[provider].last_ok < self.rules.window_s

    # -- attempts --

    def wait(self, provider: str, attempt: int, now: float, limit_s: float) -> None:
        """An attempt (any unique id) is sent and waits for its first byte, for at most ``limit_s``."""
        self._providers[provider].waiting[attempt] = now + limit_s / 2

    def answered(self, provider: str, attempt: int) -> None:
        """The attempt got its first byte, or ended."""
        self._providers[provider].waiting.pop(attempt, None)

    def begin(self, provider: str, arm: str, now: float) -> bool:
        """Claim an attempt on ``arm`` now; after an ejection only the first caller gets the trial."""
        if not self.available(provider, arm, now):
            return False
        state = self._providers[provider]
        if state.ejected_until is not None:
            state.trial = True
        return True

    def release(self, provider: str) -> None:
        """The attempt ended saying nothing about the provider (client error, client gone)."""
        self._providers[provider].trial = False

    def record(
        self,
        provider: str,
        arm: str,
        outcome: Outcome,
        now: float,
        *,
        retry_after_s: float | None = None,
        exhausted: bool = False,
    ) -> None:
        """A finished attempt. ``exhausted``: a 429 whose headers show the arm's limit used up."""
        state = self._providers[provider]
        if outcome == "neutral":
            state.trial = False
            return
        failure = outcome in ("failure", "timeout")
        throttled = outcome == "throttled"
        state.window.add(now, failure, outcome == "timeout", throttled)
        if failure or throttled:
            state.bad_until = now + self.rules.window_s
            self._bad_until = max(self._bad_until, state.bad_until)
        on_trial = state.ejected_until is not None and now >= state.ejected_until
        if outcome == "ok":
            state.last_ok = now
            if state.ejected_until is not None and on_trial:
                self._restore(provider, state)
            return
        if throttled:
            state.trial = False
            self._throttled(provider, arm, state, now, retry_after_s, exhausted=exhausted)
            return
        if on_trial and state.trial:
            state.trial = False
            self._eject(provider, state, now, "its trial attempt after an ejection failed")
            return
        if state.ejected_until is None:
            self._judge(provider, state, now)

    # -- rules --

    def _judge(self, provider: str, state: _Provider, now: float) -> None:
        rules = self.rules
        attempts, failures, timeouts, _throttled = state.window.totals(now)
        seconds = f"{rules.window_s:g} s"
        if failures >= rules.failures and failures >= rules.failure_rate * attempts:
            self._eject(provider, state, now, f"{failures} of {attempts} attempts failed in {seconds}")
        elif timeouts >= rules.timeouts and timeouts >= rules.failure_rate * attempts:
            self._eject(provider, state, now, f"{timeouts} of {attempts} attempts timed out in {seconds}")

    def _eject(self, provider: str, state: _Provider, now: float, why: str) -> None:
        others = sum(
            self._providers[p].arms
            for p in self._ejected
            if p != provider and self._ejected_now(self._providers[p], now)
        )
        if others + state.arms > self.rules.max_ejected_share * self._pool:
            state.ejected_until = None  # over the cap: it keeps serving, at a lowered share
            self._ejected.discard(provider)
            state.ejections = 0
            return
        state.ejections += 1
        duration = self.rules.cooldown_s * min(2 ** (state.ejections - 1), MAX_BACKOFF)
        state.ejected_until = now + duration
        state.reason = f"{provider} is ejected for {duration:g} s: {why}"
        self._ejected.add(provider)

    def _restore(self, provider: str, state: _Provider) -> None:
        state.ejected_until = None
        state.ejections = 0
        state.trial = False
        state.window.clear()
        self._ejected.discard(provider)

    def _throttled(
        self,
        provider: str,
        arm: str,
        state: _Provider,
        now: float,
        retry_after_s: float | None,
        *,
        exhausted: bool,
    ) -> None:
        wait = retry_after_s if retry_after_s is not None and retry_after_s > 0 else DEFAULT_RETRY_AFTER_S
        said = f"retry-after {wait:g} s"
        if exhausted:
            self._cool(arm, now + wait, f"{arm} answered 429: its rate limit is used up ({said})")
            return
        attempts, _failures, _timeouts, throttled = state.window.totals(now)
        if throttled >= self.rules.failures and throttled >= self.rules.failure_rate * attempts:
            why = f"{provider} answered 429 to {throttled} of {attempts} attempts in the window ({said})"
            self._cool(provider, now + wait, why)

    def _cool(self, key: str, until: float, why: str) -> None:
        current = self._cooled.get(key)
        if current is None or current[0] < until:
            self._cooled[key] = (until, why)

    def _cooling(self, key: str, now: float) -> bool:
        cooled = self._cooled.get(key)
        if cooled is None:
            return False
        if now < cooled[0]:
            return True
        del self._cooled[key]
        return False

    def _ejected_now(self, state: _Provider, now: float) -> bool:
        return state.ejected_until is not None and (now < state.ejected_until or state.trial)

    def _weight(self, state: _Provider, now: float) -> float:
        if now >= state.bad_until:
            return 1.0
        attempts, failures, _timeouts, throttled = state.window.totals(now)
        if attempts < self.rules.failures:
            return 1.0
        return max(MIN_WEIGHT, 1.0 - (failures + throttled) / attempts)
