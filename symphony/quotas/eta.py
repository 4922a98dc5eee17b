"""Live quota state from usage events: what each window holds, when it resets, when it runs out.

``ProviderUsage`` replays a provider's usage events into the windows of
``symphony.quotas.rules`` (event time, the same buckets as the reservations) and answers,
for each limit, the ``Eta``: used, remaining under the cap in force, time to reset
(when the window next frees room: the oldest bucket leaving a rolling window, the
end of a fixed window, the close of a first-use window) and time to exhaustion at
the current burn rate (what the last minute consumed, per minute).

It is plain state, so the quotas dataflow can keep one per provider in a
recoverable stateful step; the quotas matrix reads what that step publishes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from symphony.quotas.reconciler import Adjustment
from symphony.quotas.rules import MINUTE_MS, Limit

BURN_WINDOW_MS = MINUTE_MS


@dataclass(frozen=True, slots=True)
class Eta:
    provider: str
    metric: str
    window: str
    cap: int
    used: int
    remaining: int
    reset_in_ms: int | None
    exhaust_in_ms: int | None  # None: nothing is burning
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
            exhaust = int(remaining / burn * MINUTE_MS) if burn > 0 else None
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
