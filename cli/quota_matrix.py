"""The quotas matrix: provider by window, what is used and left, and when it resets or runs out.

``used`` and ``remaining`` come from the reservation buckets in Redis (what the
proxies reserved and settled, across every replica), under the cap in force (a
runtime cap from the reconciler, else the policy's). Time to exhaustion divides
what remains by the burn rate the quotas dataflow publishes in
``symphony:eta:*`` (source ``dataflow``); without it, by what the last minute's
buckets hold (source ``buckets``).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from symphony.durations import format_ms
from symphony.keys import eta_key
from symphony.quotas import MINUTE_MS, ROLLING, Limit, QuotaPolicy

COLUMNS = (
    "provider",
    "window",
    "metric",
    "policy_cap",
    "runtime_cap",
    "used",
    "remaining",
    "reset_in",
    "exhaust_in",
    "source",
)


@dataclass(frozen=True)
class MatrixRow:
    provider: str
    window: str
    metric: str
    policy_cap: int
    runtime_cap: int | None
    used: int
    remaining: int
    reset_in_ms: int | None
    exhaust_in_ms: int | None
    source: str

    def cells(self, *, human: bool) -> list[object]:
        shown = (lambda ms: format_ms(ms)) if human else (lambda ms: ms)
        return [
            self.provider,
            self.window,
            self.metric,
            self.policy_cap,
            "" if human and self.runtime_cap is None else self.runtime_cap,
            self.used,
            self.remaining,
            shown(self.reset_in_ms),
            shown(self.exhaust_in_ms),
            self.source,
        ]


def _bucket_values(client: redis.Redis, limit: Limit, now: int) -> tuple[list[int], int | None]:
    """The window's bucket values (current first) and, for a first-use window, when it closes."""
    window = limit.window
    if window.reset == "first_use":
        stored = client.hmget(limit.key, ["start", "used"])
        if stored[0] is None or now >= int(stored[0]) + window.length_ms:
            return [0], None
        return [int(stored[1] or 0)], int(stored[0]) + window.length_ms - now
    return [int(v or 0) for v in client.hmget(limit.key, window.buckets(now))], None


def _reset_in(limit: Limit, values: list[int], closes_in: int | None, now: int) -> int | None:
    window = limit.window
    if not any(values):
        return None
    if window.reset == "first_use":
        return closes_in
    if window.reset == "fixed":
        return (now // window.length_ms + 1) * window.length_ms - now
    oldest = max(age for age, v in enumerate(values) if v)  # the oldest bucket holding usage
    return (now // window.sub_ms - oldest + window.buckets_counted) * window.sub_ms - now


def _burn_per_min(client: redis.Redis, limit: Limit, now: int) -> tuple[float, str]:
    published = client.hget(eta_key(limit.provider, limit.metric_key, limit.window.name), "burn_per_min")
    if published:
        return float(published), "dataflow"
    minute = Limit(limit.provider, limit.metric, ROLLING["minute"], limit.cap, limit.model)
    return float(sum(_bucket_values(client, minute, now)[0])), "buckets"


def matrix_row(client: redis.Redis, limit: Limit, now: int) -> MatrixRow:
    runtime = client.get(limit.runtime_cap_key)
    runtime_cap = int(runtime) if runtime is not None else None
    cap = runtime_cap if runtime_cap is not None else limit.cap
    values, closes_in = _bucket_values(client, limit, now)
    used = sum(values)
    remaining = max(cap - used, 0)
    burn, source = _burn_per_min(client, limit, now)
    exhaust = int(remaining / burn * MINUTE_MS) if burn > 0 else None
    return MatrixRow(
        limit.provider,
        limit.window.name,
        limit.metric_key,
        limit.cap,
        runtime_cap,
        used,
        remaining,
        _reset_in(limit, values, closes_in, now),
        exhaust,
        source,
    )


def quota_matrix(client: redis.Redis, policy: QuotaPolicy, now: int) -> list[MatrixRow]:
    """Every provider of the policy, every provider-wide window, at event time ``now``."""
    return [
        matrix_row(client, limit, now)
        for provider in policy.providers
        for limit in policy.provider_limits(provider)
    ]
