"""Live quota state from usage events: what each window holds, when it resets, when it runs out.

``ProviderUsage`` replays a provider's usage events into the windows of
``symphony.quotas.rules`` (event time, the same buckets as the reservations) and answers,
for each limit, the ``Eta``: used, remaining under the cap in force, time to reset
(when the window next frees room: the oldest bucket leaving a rolling window, the
end of a fixed window, the close of a first-use window) and time to exhaustion at
the current burn rate (what the last minute consumed, per minute).

Time to exhaustion (``exhaust_in``) is given only where the burn rate, held steady, fills the
window before it resets: a fixed, monthly or first-use window before its end; a rolling window
counting its buckets leaving as the burn adds to the newest (so it fills only if the burn rate
over a whole window is at least the cap). Otherwise there is none, and ``NoEta`` says why.

It is plain state, so the quotas dataflow can keep one per provider in a
recoverable stateful step; the quotas matrix reads what that step publishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from symphony.quotas.reconciler import Adjustment
from symphony.quotas.rules import MINUTE_MS, Limit, Window

BURN_WINDOW_MS = MINUTE_MS


class NoEta(StrEnum):
    """Why a window has no time to exhaustion."""

    EXHAUSTED = "exhausted"  # nothing left now (exhaust_in is 0)
    IDLE = "idle"  # nothing is burning
    RESETS_FIRST = "resets first"  # a fixed, monthly or first-use window ends before the burn fills it
    NEVER = "never at this rate"  # a rolling window frees room as fast as the burn takes it


def exhaust_in_ms(
    window: Window, values: Sequence[int], cap: int, burn_per_min: float, now: int, ends_in: int | None
) -> tuple[int | None, NoEta | None]:
    """When the window is full at a steady ``burn_per_min``, else None and why.

    ``values``: what the window counts, its buckets current first (a rolling window's
    ``buckets_counted`` of them; one for the others); ``ends_in``: until a fixed, monthly or
    open first-use window ends (None for a first-use window not open, which the next use opens).
    """
    used = sum(values)
    if used >= cap:
        return 0, NoEta.EXHAUSTED
    if burn_per_min <= 0:
        return None, NoEta.IDLE
    per_ms = burn_per_min / MINUTE_MS
    if window.reset == "rolling":
        rolling = _rolling_fill_ms(window, values, cap, per_ms, now)
        return (rolling, None) if rolling is not None else (None, NoEta.NEVER)
    fills_in = int((cap - used) / per_ms)
    horizon = ends_in if ends_in is not None else window.length_ms
    return (fills_in, None) if fills_in < horizon else (None, NoEta.RESETS_FIRST)


def _rolling_fill_ms(window: Window, values: Sequence[int], cap: int, per_ms: float, now: int) -> int | None:
    """Step from bucket edge to bucket edge: the burn adds to the newest bucket, the oldest leaves at each
    edge. After ``buckets_counted + 1`` steps the window holds the burn alone, at most a window's worth."""
    buckets = [float(v) for v in values]  # current first
    usage = sum(buckets)
    elapsed = 0.0
    step = window.sub_ms - now % window.sub_ms
    for _ in range(window.buckets_counted + 1):
        if usage + per_ms * step >= cap:
            return int(elapsed + (cap - usage) / per_ms)
        buckets[0] += per_ms * step
        usage += per_ms * step - buckets.pop()
        buckets.insert(0, 0.0)
        elapsed += step
        step = window.sub_ms
    return None


@dataclass(frozen=True, slots=True)
class Eta:
    provider: str
    metric: str
    window: str
    cap: int
    used: int
    remaining: int
    reset_in_ms: int | None
    exhaust_in_ms: int | None  # None: the burn rate does not fill the window before it resets
    burn_per_min: float
    as_of_ms: int

    def as_fields(self) -> dict[str, str]:
        """Redis hash fields (empty string for None)."""
        return {name: "" if value is None else str(value) for name, value in _fields(self).items()}


def _fields(eta: Eta) -> dict[str, object]:
    return {name: getattr(eta, name) for name in Eta.__slots__}


@dataclass(frozen=True)
class QuotaUpdate:
    """What the quotas dataflow publishes for one provider: every window's ETA, and cap changes."""

    provider: str
    etas: list[Eta]
    adjustments: list[Adjustment]


@dataclass
class _LimitUsage:
    limit: Limit
    buckets: dict[int, int] = field(default_factory=dict)  # bucket start (ms) -> amount
    first_use_start: int | None = None

    def add(self, ts: int, amount: int) -> None:
        window = self.limit.window
        if window.reset == "first_use":
            if self.first_use_start is None or ts >= self.first_use_start + window.length_ms:
                self.first_use_start, self.buckets = ts, {}
            self.buckets[self.first_use_start] = self.buckets.get(self.first_use_start, 0) + amount
            return
        start = ts // window.sub_ms * window.sub_ms
        self.buckets[start] = self.buckets.get(start, 0) + amount

    def counted(self, now: int) -> dict[int, int]:
        """The buckets inside the window at ``now``; drops the ones that left it for good."""
        window = self.limit.window
        if window.reset == "first_use":
            start = self.first_use_start
            return dict(self.buckets) if start is not None and now < start + window.length_ms else {}
        oldest = (now // window.sub_ms - window.buckets_counted + 1) * window.sub_ms
        if window.reset == "fixed":
            oldest = now // window.length_ms * window.length_ms
        self.buckets = {start: v for start, v in self.buckets.items() if start >= oldest}
        return {start: v for start, v in self.buckets.items() if start <= now}

    def by_age(self, now: int, counted: dict[int, int]) -> list[int]:
        """The counted buckets current first (a rolling window's all ``buckets_counted``; else one)."""
        window = self.limit.window
        if window.reset != "rolling":
            return [sum(counted.values())]
        values = [0] * window.buckets_counted
        for start, amount in counted.items():
            values[now // window.sub_ms - start // window.sub_ms] += amount
        return values

    def reset_in(self, now: int, counted: dict[int, int]) -> int | None:
        window = self.limit.window
        if not counted:
            return None
        if window.reset == "first_use":
            assert self.first_use_start is not None
            return self.first_use_start + window.length_ms - now
        if window.reset == "fixed":
            return (now // window.length_ms + 1) * window.length_ms - now
        return min(counted) + window.length_ms - now


@dataclass
class ProviderUsage:
    """One provider's usage per limit, fed with (event time, requests, tokens)."""

    provider: str
    limits: list[Limit]
    _usage: list[_LimitUsage] = field(default_factory=list)
    _burn: dict[str, dict[int, int]] = field(default_factory=lambda: {"requests": {}, "tokens": {}})
    last_ts: int = 0

    def __post_init__(self) -> None:
        self._usage = [_LimitUsage(limit) for limit in self.limits]

    def add(self, ts: int, requests: int, tokens: int) -> None:
        amounts = {"requests": requests, "tokens": tokens}
        for usage in self._usage:
            amount = amounts[usage.limit.metric]
            if amount:
                usage.add(ts, amount)
        second = ts // 1000 * 1000
        for metric, amount in amounts.items():
            self._burn[metric][second] = self._burn[metric].get(second, 0) + amount
        self.last_ts = max(self.last_ts, ts)

    def add_many(self, usage: Iterable[tuple[int, int, int]]) -> None:
        """Many (event time, requests, tokens) at once, summed per second first.

        Every window's buckets are whole seconds or longer, so summing within a second
        changes no rolling or fixed bucket; a first-use window opens at the start of
        the second of its first event rather than at its millisecond.
        """
        per_second: dict[int, list[int]] = {}
        for ts, requests, tokens in usage:
            amounts = per_second.setdefault(ts - ts % 1000, [0, 0])
            amounts[0] += requests
            amounts[1] += tokens
        for second, (requests, tokens) in per_second.items():
            self.add(second, requests, tokens)

    def burn_per_min(self, metric: str, now: int) -> float:
        recent = {s: v for s, v in self._burn[metric].items() if s > now - BURN_WINDOW_MS}
        self._burn[metric] = recent
        return sum(recent.values()) * MINUTE_MS / BURN_WINDOW_MS

    def etas(self, now: int, caps: dict[Limit, int] | None = None) -> list[Eta]:
        """Every limit's state at ``now``; ``caps`` overrides policy caps (runtime caps)."""
        out = []
        for usage in self._usage:
            limit = usage.limit
            cap = (caps or {}).get(limit, limit.cap)
            counted = usage.counted(now)
            used = sum(counted.values())
            remaining = max(cap - used, 0)
            burn = self.burn_per_min(limit.metric, now)
            ends_in = limit.window.resets_in_ms(now)
            if limit.window.reset == "first_use":
                ends_in = usage.reset_in(now, counted)
            exhaust, _ = exhaust_in_ms(limit.window, usage.by_age(now, counted), cap, burn, now, ends_in)
            out.append(
                Eta(
                    limit.provider,
                    limit.metric_key,
                    limit.window.name,
                    cap,
                    used,
                    remaining,
                    usage.reset_in(now, counted),
                    exhaust,
                    burn,
                    now,
                )
            )
        return out
