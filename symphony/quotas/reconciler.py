"""The reconciler: the caps a provider reports against the caps the policy says.

Providers report their per-minute limits on every answer (OpenAI-compatible
``x-ratelimit-limit-requests`` / ``-tokens``, Anthropic
``anthropic-ratelimit-requests-limit`` / ``-tokens-limit``). When what a provider
reports differs from the policy, the reconciler notes the difference once and
sets the runtime cap to the lower of the two: a provider that allows less than the
policy assumes must not be sent more, and one that allows more does not lift a cap
the operator chose. A runtime cap lives in Redis with a TTL, so it expires back to
the policy unless the provider keeps reporting it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from symphony.quotas.rules import Limit

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
    target: int  # the cap in force after: min(policy, observed)
    noted: bool  # a new difference between policy and provider: log it
    applies: bool  # the cap in force changes (or its TTL needs a refresh): write it

    @property
    def changes_cap(self) -> bool:
        return self.target != self.previous


@dataclass
class Reconciler:
    """Per provider: what each provider last reported, and the runtime caps in force (event time)."""

    limits: list[Limit]
    runtime: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # key -> (cap, set at)
    reported: dict[tuple[str, str], int] = field(default_factory=dict)  # key -> last observed limit

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
            value = observed[key]
            noted = value != limit.cap and self.reported.get(key) != value
            self.reported[key] = value
            previous, set_at = self.runtime.get(key, (limit.cap, -REFRESH_AFTER_MS))
            target = min(limit.cap, value)
            stale = key in self.runtime and now_ms - set_at >= REFRESH_AFTER_MS
            applies = target != previous or stale
            if not (noted or applies):
                continue
            adjustments.append(Adjustment(limit, limit.cap, value, previous, target, noted, applies))
            if applies:
                self.runtime[key] = (target, now_ms)
        return adjustments

    def _reportable(self) -> list[Limit]:
        return [
            limit
            for limit in self.limits
            if not limit.model and (limit.metric, limit.window.name) in OBSERVED_LIMIT_HEADERS.values()
        ]
