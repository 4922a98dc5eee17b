"""Quota policy, windows and Redis key layout: the exact semantics of Symphony's caps.

Windows (all in event time, UTC epoch milliseconds, from ``symphony.clock``):

- Rolling ``minute``, ``day`` and ``week`` windows are made of sub-buckets of 10 s,
  1 h and 1 day. The bucket of instant ``t`` is ``t // sub_ms``. The usage a rolling
  window holds at ``t`` is the sum of the current bucket and the ``n - 1`` before it
  (``n`` = 6, 24, 7), so it spans between ``(n-1)/n`` and all of its nominal length.
  A window's buckets are the fields of one hash (the field is the bucket number); a
  write that opens a bucket deletes the fields that left the window and sets the
  hash to expire ``window + sub`` later, by when no bucket it holds still counts.
  Beside its buckets the hash keeps ``newest`` and ``sum`` (the newest bucket written
  and what the window held then), so most reservations read three fields, not every
  bucket (``bucket_values`` reads the buckets alone).
- Calendar months (``month``, UTC) hold app budgets: one bucket per month (``YYYYMM``).
- Subscription windows (a provider's usage window) have a length and a reset rule:
  ``fixed`` windows are aligned on multiples of their length since the Unix epoch
  (``1d`` resets at 00:00 UTC; ``3h`` at 00:00, 03:00, … UTC), one bucket per window
  (``t // length``); ``first_use`` windows open with the first reservation after the
  previous one closed and last their length (the hash holds ``start`` and ``used``
  instead of buckets, and expires with the window).

Caps apply per provider, and per model where the policy says so, to two metrics:
``requests`` and ``tokens`` (input + output). A reservation is all-or-nothing across
every window of the arm: it adds 1 request and the estimated tokens to the current
bucket of each window only if no window would exceed its cap. Settlement adds
(actual - estimated) tokens to the very buckets the reservation wrote (if they still
exist), so the buckets hold what was really used; settlement may overshoot a cap by
at most the estimate's error, never by a whole request.

A runtime cap (``symphony:caps:{<provider>}:<metric>:<window>``, written by the
reconciler from the limits providers report, with a TTL) replaces the policy cap
while it lives.

Keys: ``quota:{<provider>}:<metric>:<window>`` (one hash per window, so a reservation
touches two keys per cap, the window and its runtime cap, however many buckets the
window counts); ``metric`` is ``requests`` or ``tokens`` for a provider's caps and
``requests@<model>`` / ``tokens@<model>`` for a model's. The braces make the provider a
hash tag, so every key one reservation touches is in the same Redis Cluster slot.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from symphony.catalog import POLICIES_DIR
from symphony.clock import utc_datetime
from symphony.keys import quota_window_key, runtime_cap_key

QUOTAS_FILE = POLICIES_DIR / "quotas.v1.json"

# usd_micros: spend in millionths of a dollar (app budgets)
Metric = Literal["requests", "tokens", "usd_micros"]
Reset = Literal["rolling", "fixed", "first_use", "month"]
METRICS: tuple[Metric, ...] = ("requests", "tokens")

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
_UNITS_MS = {"s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}


def parse_duration(text: str) -> int:
    """``"3h"`` → milliseconds; units s, m, h, d."""
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if match is None:
        raise ValueError(f"expected a duration like 90s, 5m, 3h or 1d, got {text!r}")
    return int(match[1]) * _UNITS_MS[match[2]]


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    length_ms: int
    sub_ms: int
    reset: Reset

    @property
    def buckets_counted(self) -> int:
        return self.length_ms // self.sub_ms

    @property
    def ttl_ms(self) -> int:
        return self.length_ms + self.sub_ms if self.reset == "rolling" else self.length_ms

    def current_bucket(self, now_ms: int) -> int:
        """The number of the bucket ``now_ms`` writes to (0 for a first-use window, which has none)."""
        if self.reset == "first_use":
            return 0
        if self.reset == "month":
            day = utc_datetime(now_ms)
            return day.year * 100 + day.month
        return now_ms // self.sub_ms

    def buckets(self, now_ms: int) -> list[str]:
        """The buckets (hash fields) whose sum is the window's usage at ``now_ms``, current first.

        A first-use window has none: its hash holds ``start`` and ``used``.
        """
        if self.reset == "first_use":
            return []
        current = self.current_bucket(now_ms)
        return [str(current - age) for age in range(self.buckets_counted)]

    def bucket_start_ms(self, bucket: str) -> int:
        return int(bucket) * self.sub_ms

    def resets_in_ms(self, now_ms: int) -> int | None:
        """Until a fixed or calendar-month window starts afresh; None for the others (no set time)."""
        if self.reset == "fixed":
            return (now_ms // self.length_ms + 1) * self.length_ms - now_ms
        if self.reset == "month":
            return next_month_start_ms(now_ms) - now_ms
        return None


# A calendar month (UTC), for budgets: one bucket per month, named YYYYMM.
MONTH = Window("month", 31 * DAY_MS, 31 * DAY_MS, "month")


def month_start_ms(now_ms: int) -> int:
    day = utc_datetime(now_ms)
    return int(datetime(day.year, day.month, 1, tzinfo=UTC).timestamp() * 1000)


def next_month_start_ms(now_ms: int) -> int:
    day = utc_datetime(now_ms)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


ROLLING: dict[str, Window] = {
    "minute": Window("minute", MINUTE_MS, 10 * SECOND_MS, "rolling"),
    "day": Window("day", DAY_MS, HOUR_MS, "rolling"),
    "week": Window("week", 7 * DAY_MS, DAY_MS, "rolling"),
}


def bucket_values(fields: Mapping[bytes, bytes]) -> dict[int, int]:
    """A bucketed window's hash (``HGETALL``) as bucket number -> value, without the ``newest``
    and ``sum`` fields the reservation script keeps beside the buckets."""
    return {int(name): int(value) for name, value in fields.items() if name.isdigit()}


def subscription_window(length: str, reset: Literal["fixed", "first_use"]) -> Window:
    length_ms = parse_duration(length)
    return Window(length, length_ms, length_ms, reset)


@dataclass(frozen=True, slots=True)
class Limit:
    """One cap: a provider (or one of its models), a metric, a window."""

    provider: str
    metric: Metric
    window: Window
    cap: int
    model: str = ""
    # Computed once: every reservation looks its limits' layout up by them (``store.layout_of``), and a
    # dataclass's own hash hashes every field, the window's too, each time (46 calls a reservation).
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (self.provider, self.metric, self.window, self.cap, self.model)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash

    @property
    def metric_key(self) -> str:
        return f"{self.metric}@{self.model}" if self.model else self.metric

    @property
    def name(self) -> str:
        scope = f"{self.provider}/{self.model}" if self.model else self.provider
        return f"{scope} {self.metric} per {self.window.name}"

    @property
    def key(self) -> str:
        """The window's hash: its buckets as fields (a first-use window's ``start`` and ``used``)."""
        return quota_window_key(self.provider, self.metric_key, self.window.name)

    @property
    def runtime_cap_key(self) -> str:
        return runtime_cap_key(self.provider, self.metric_key, self.window.name)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Caps = dict[Metric, dict[str, int]]


class Subscription(_Frozen):
    window: str
    reset: Literal["fixed", "first_use"]
    requests: int | None = Field(default=None, gt=0)
    tokens: int | None = Field(default=None, gt=0)

    @field_validator("window")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class ProviderQuota(_Frozen):
    caps: Caps = {}
    models: dict[str, Caps] = {}
    subscription: Subscription | None = None

    @model_validator(mode="after")
    def _known_windows(self) -> ProviderQuota:
        for caps in (self.caps, *self.models.values()):
            for windows in caps.values():
                unknown = set(windows) - set(ROLLING)
                if unknown:
                    raise ValueError(f"unknown windows {sorted(unknown)}; use {sorted(ROLLING)}")
        return self


class QuotaPolicy(_Frozen):
    version: str
    comment: str = ""
    providers: dict[str, ProviderQuota]

    def limits(self, provider: str, model: str) -> tuple[Limit, ...]:
        """Every cap a request to ``provider/model`` counts against."""
        quota = self.providers.get(provider)
        if quota is None:
            return ()
        limits = _rolling_limits(provider, "", quota.caps)
        limits += _rolling_limits(provider, model, quota.models.get(model, {}))
        if quota.subscription is not None:
            limits += _subscription_limits(provider, quota.subscription)
        return tuple(limits)

    def provider_limits(self, provider: str) -> list[Limit]:
        """The provider-wide caps (no per-model ones), for reports."""
        return [limit for limit in self.limits(provider, "") if not limit.model]


def _rolling_limits(provider: str, model: str, caps: Caps) -> list[Limit]:
    return [
        Limit(provider, metric, ROLLING[window], cap, model)
        for metric, windows in caps.items()
        for window, cap in windows.items()
    ]


def _subscription_limits(provider: str, subscription: Subscription) -> list[Limit]:
    window = subscription_window(subscription.window, subscription.reset)
    caps: dict[Metric, int | None] = {"requests": subscription.requests, "tokens": subscription.tokens}
    return [Limit(provider, metric, window, cap) for metric, cap in caps.items() if cap is not None]


@cache
def load_quota_policy(path: Path = QUOTAS_FILE) -> QuotaPolicy:
    return QuotaPolicy.model_validate(json.loads(path.read_text()))
