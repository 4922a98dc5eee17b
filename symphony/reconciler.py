"""The reconciler: the caps a provider reports against the caps the policy says.

Providers report their per-minute limits on every answer (OpenAI-compatible
``x-ratelimit-limit-requests`` / ``-tokens``, Anthropic
``anthropic-ratelimit-requests-limit`` / ``-tokens-limit``). When what a provider
reports differs from the cap in force, the reconciler proposes a runtime cap equal
to the observed limit: the provider's own limit is the truth about its rate
limits, while budgets over days, weeks and usage windows stay the policy's. A
runtime cap lives in Redis with a TTL, so it expires back to the policy unless the
provider keeps reporting it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from symphony.quotas import Limit

RUNTIME_CAP_TTL_MS = 60 * 60 * 1000
# Refresh a runtime cap's TTL well before it expires while the provider keeps reporting it.
REFRESH_AFTER_MS = RUNTIME_CAP_TTL_MS // 2

# reported header -> (metric, window) of the provider-wide limit it describes
OBSERVED_LIMIT_HEADERS: dict[str, tuple[str, str]] = {
    "x-ratelimit-limit-requests": ("requests", "minute"),
    "x-ratelimit-limit-tokens": ("tokens", "minute"),
    "anthropic-ratelimit-requests-limit": ("requests", "minute"),
    "anthropic-ratelimit-tokens-limit": ("tokens", "minute"),
}


def observed_limits(headers: Mapping[str, str]) -> dict[tuple[str, str], int]:
    """(metric, window) -> the limit the provider reported, from its rate-limit headers."""
    observed = {}
    for header, key in OBSERVED_LIMIT_HEADERS.items():
        value = headers.get(header, "")
        if value.isdigit():
            observed[key] = int(value)
    return observed


@dataclass(frozen=True, slots=True)
class Adjustment:
    limit: Limit
    policy: int
    observed: int
    previous: int  # the cap in force before: the policy's or an earlier runtime cap
    logged: bool  # False for a silent TTL refresh of an unchanged runtime cap


@dataclass
class Reconciler:
    """Per provider: which runtime caps are in force, and since when (event time)."""

    limits: list[Limit]
    runtime: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # key -> (cap, set at)

    def caps_in_force(self) -> dict[Limit, int]:
        return {
            limit: self.runtime[(limit.metric, limit.window.name)][0]
            for limit in self._reportable()
            if (limit.metric, limit.window.name) in self.runtime
        }

    def observe(self, headers: Mapping[str, str], now_ms: int) -> list[Adjustment]:
        adjustments = []
        observed = observed_limits(headers)
        for limit in self._reportable():
            key = (limit.metric, limit.window.name)
            if key not in observed:
                continue
            cap, set_at = self.runtime.get(key, (limit.cap, -REFRESH_AFTER_MS))
            value = observed[key]
            if value == cap and (key not in self.runtime or now_ms - set_at < REFRESH_AFTER_MS):
                continue
            adjustments.append(Adjustment(limit, limit.cap, value, cap, logged=value != cap))
            self.runtime[key] = (value, now_ms)
        return adjustments

    def _reportable(self) -> list[Limit]:
        return [
            limit
            for limit in self.limits
            if not limit.model and (limit.metric, limit.window.name) in OBSERVED_LIMIT_HEADERS.values()
        ]
