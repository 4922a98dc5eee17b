"""The windows model: each provider's subscription windows over a horizon, as plannable slots.

The windows, their token budgets and their reset rules come from the quota policy
(``symphony.quotas.rules``: the ``tokens`` cap of each provider's subscription window):

- a ``fixed`` window is one slot per window the horizon touches, aligned exactly as
  the quota store aligns its buckets (``Window.buckets`` / ``Window.bucket_start_ms``);
- a ``first_use`` window opens with the first reservation after the previous one
  closed, so when it opens is a decision of the plan: the model offers *candidate*
  slots, one per start on a grid (``grid_ms`` apart, from ``now`` or from the close of
  the window open now), and the planner opens at most one of any overlapping
  candidates of a provider.

A window open at ``now`` counts what it already holds (``CurrentUse``) and the
forecast of interactive use from ``now`` to its end; a later window counts the
forecast over all of it. The forecast is an input: any ``Forecast`` (see
``scheduler.forecast``). Known simplification: interactive use forecast in a gap the
plan leaves between two first-use windows would, in reality, open a window there;
the model does not constrain it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from symphony.quotas import HOUR_MS, Limit, QuotaPolicy

# (provider, start_ms, end_ms) -> interactive tokens forecast in [start, end)
Forecast = Callable[[str, int, int], int]

HORIZON_MS = 12 * HOUR_MS
GRID_MS = HOUR_MS // 2


def no_interactive(provider: str, start_ms: int, end_ms: int) -> int:
    """The forecast when none is known: no interactive use."""
    return 0


@dataclass(frozen=True, slots=True)
class Slot:
    """One (provider, window) a job can be planned into."""

    provider: str
    start_ms: int
    end_ms: int
    cap: int  # the window's token budget
    used: int = 0  # tokens already used in it (a window open now)
    forecast: int = 0  # interactive tokens forecast in it from now on
    first_use: bool = False  # a candidate start: overlapping candidates exclude each other

    @property
    def available(self) -> int:
        """Tokens left for jobs: the budget net of what is used and forecast."""
        return max(self.cap - self.used - self.forecast, 0)

    def overlaps(self, other: Slot) -> bool:
        return self.start_ms < other.end_ms and other.start_ms < self.end_ms


@dataclass(frozen=True, slots=True)
class CurrentUse:
    """A provider's window open now: tokens it holds and, for a first-use window, when it opened."""

    used: int = 0
    opened_ms: int | None = None


def subscription_limit(policy: QuotaPolicy, provider: str) -> Limit | None:
    """The provider's subscription token cap, if its policy has one."""
    for limit in policy.provider_limits(provider):
        if limit.metric == "tokens" and limit.window.reset in ("fixed", "first_use"):
            return limit
    return None


def windowed(policy: QuotaPolicy) -> dict[str, Limit]:
    """The providers with a subscription token window, and its limit."""
    limits = {provider: subscription_limit(policy, provider) for provider in policy.providers}
    return {provider: limit for provider, limit in limits.items() if limit is not None}


def slots(
    policy: QuotaPolicy,
    now_ms: int,
    horizon_ms: int = HORIZON_MS,
    forecast: Forecast = no_interactive,
    current: Mapping[str, CurrentUse] | None = None,
    grid_ms: int = GRID_MS,
) -> list[Slot]:
    """Every provider's slots starting before ``now + horizon``, in provider then time order."""
    out: list[Slot] = []
    for provider in policy.providers:
        limit = subscription_limit(policy, provider)
        if limit is None:
            continue
        use = (current or {}).get(provider, CurrentUse())
        make = _first_use_slots if limit.window.reset == "first_use" else _fixed_slots
        out += make(limit, now_ms, now_ms + horizon_ms, forecast, use, grid_ms)
    return out


def _fixed_slots(
    limit: Limit, now_ms: int, until_ms: int, forecast: Forecast, use: CurrentUse, grid_ms: int
) -> list[Slot]:
    window = limit.window
    start = window.bucket_start_ms(window.buckets(now_ms)[0])
    out = []
    while start < until_ms:
        end = start + window.length_ms
        used = use.used if start <= now_ms else 0
        predicted = forecast(limit.provider, max(start, now_ms), end)
        out.append(Slot(limit.provider, start, end, limit.cap, used, predicted))
        start = end
    return out


def _first_use_slots(
    limit: Limit, now_ms: int, until_ms: int, forecast: Forecast, use: CurrentUse, grid_ms: int
) -> list[Slot]:
    length = limit.window.length_ms
    out = []
    first = now_ms
    if use.opened_ms is not None and now_ms < use.opened_ms + length:
        end = use.opened_ms + length
        predicted = forecast(limit.provider, now_ms, end)
        out.append(Slot(limit.provider, use.opened_ms, end, limit.cap, use.used, predicted, True))
        first = end
    for start in range(first, until_ms, grid_ms):
        predicted = forecast(limit.provider, start, start + length)
        out.append(Slot(limit.provider, start, start + length, limit.cap, 0, predicted, True))
    return out
