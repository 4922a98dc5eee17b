"""The quotas matrix: every cap by window, what is used and left, and when it resets or runs out.

Its rows: each provider's caps, each model's own caps (``openai/gpt-4o``), and each app's
budgets and rate limits from its live keys (``app:<name>``; budgets in USD). ``used`` and
``remaining`` come from the reservation buckets in Redis (what the proxies reserved and settled,
across every replica), under the cap in force (a runtime cap from the reconciler, else the
policy's, else the key's).

Time to exhaustion is the time a steady burn rate takes to fill the window, shown only where it
fills it before the window resets (``symphony.quotas.exhaust_in_ms``); else ``-`` (null in JSON)
and ``no_eta`` says why. The burn rate (``source``): the one the quotas dataflow publishes in
``symphony:eta:*`` (``dataflow``); else what the scope's minute window of the same metric holds
(``buckets``); else, for a window without one (an app's budget), the window's average so far
(``window average``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from symphony.app_keys import USD_MICROS, list_keys
from symphony.durations import format_ms
from symphony.keys import eta_key
from symphony.quotas import MINUTE_MS, Limit, NoEta, QuotaPolicy, exhaust_in_ms
from symphony.quotas.rules import month_start_ms

COLUMNS = (
    "scope",
    "window",
    "metric",
    "policy_cap",
    "runtime_cap",
    "used",
    "remaining",
    "reset_in",
    "exhaust_in",
    "no_eta",
    "source",
)


@dataclass(frozen=True)
class MatrixRow:
    scope: str  # a provider, provider/model, or app:<name>
    window: str
    metric: str  # requests, tokens, or usd (an app's budget, amounts in USD)
    policy_cap: float
    runtime_cap: int | None
    used: float
    remaining: float
    reset_in_ms: int | None
    exhaust_in_ms: int | None
    no_eta: NoEta | None
    source: str

    def cells(self, *, human: bool) -> list[object]:
        shown = (lambda ms: format_ms(ms)) if human else (lambda ms: ms)
        return [
            self.scope,
            self.window,
            self.metric,
            self.policy_cap,
            "" if human and self.runtime_cap is None else self.runtime_cap,
            self.used,
            self.remaining,
            shown(self.reset_in_ms),
            shown(self.exhaust_in_ms),
            "" if human and self.no_eta is None else self.no_eta,
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


def _ends_in(limit: Limit, closes_in: int | None, now: int) -> int | None:
    """Until a fixed, monthly or open first-use window ends; None for the others."""
    return closes_in if limit.window.reset == "first_use" else limit.window.resets_in_ms(now)


def _reset_in(limit: Limit, values: list[int], ends_in: int | None, now: int) -> int | None:
    window = limit.window
    if not any(values):
        return None
    if window.reset != "rolling":
        return ends_in
    oldest = max(age for age, v in enumerate(values) if v)  # the oldest bucket holding usage
    return (now // window.sub_ms - oldest + window.buckets_counted) * window.sub_ms - now


def _elapsed_ms(limit: Limit, ends_in: int | None, now: int) -> int:
    """How much of the window the usage it holds took: a rolling window's length, else since it began."""
    window = limit.window
    if window.reset == "month":
        return now - month_start_ms(now)
    if ends_in is None:
        return window.length_ms
    return window.length_ms - ends_in


def _burn_per_min(
    client: redis.Redis, limit: Limit, scope_limits: Sequence[Limit], used: int, elapsed_ms: int, now: int
) -> tuple[float, str]:
    published = client.hget(eta_key(limit.provider, limit.metric_key, limit.window.name), "burn_per_min")
    if published:
        return float(published), "dataflow"
    minute = next(
        (o for o in scope_limits if o.metric_key == limit.metric_key and o.window.name == "minute"), None
    )
    if minute is not None:
        return float(sum(_bucket_values(client, minute, now)[0])), "buckets"
    return used / max(elapsed_ms, 1) * MINUTE_MS, "window average"


def _amount(value: int, unit: int) -> float:
    """An amount as shown: a whole count as it is, micro-dollars in dollars."""
    return value if unit == 1 else value / unit


def _scope(limit: Limit) -> str:
    return f"{limit.provider}/{limit.model}" if limit.model else limit.provider


def matrix_row(client: redis.Redis, limit: Limit, now: int, scope_limits: Sequence[Limit] = ()) -> MatrixRow:
    """One cap's row; ``scope_limits``: the caps of its scope (where its minute window is found)."""
    runtime = client.get(limit.runtime_cap_key)
    runtime_cap = int(runtime) if runtime is not None else None
    cap = runtime_cap if runtime_cap is not None else limit.cap
    values, closes_in = _bucket_values(client, limit, now)
    ends_in = _ends_in(limit, closes_in, now)
    used = sum(values)
    burn, source = _burn_per_min(client, limit, scope_limits, used, _elapsed_ms(limit, ends_in, now), now)
    exhaust, no_eta = exhaust_in_ms(limit.window, values, cap, burn, now, ends_in)
    usd = limit.metric == "usd_micros"
    unit = USD_MICROS if usd else 1
    return MatrixRow(
        _scope(limit),
        limit.window.name,
        "usd" if usd else limit.metric,
        _amount(limit.cap, unit),
        runtime_cap,
        _amount(used, unit),
        _amount(max(cap - used, 0), unit),
        _reset_in(limit, values, ends_in, now),
        exhaust,
        no_eta,
        source,
    )


def _provider_scopes(policy: QuotaPolicy) -> list[list[Limit]]:
    """Each provider's own caps, then each of its models' own caps."""
    scopes = []
    for provider, quota in policy.providers.items():
        scopes.append(policy.provider_limits(provider))
        for model in quota.models:
            scopes.append([limit for limit in policy.limits(provider, model) if limit.model])
    return scopes


def _app_scopes(client: redis.Redis) -> list[list[Limit]]:
    """Each app's budgets and rates, from its keys that are not revoked (one row per distinct cap)."""
    by_app: dict[str, dict[Limit, None]] = {}
    for key in list_keys(client):
        if key.revoked_ms is None:
            by_app.setdefault(key.app, {}).update(dict.fromkeys(key.limits()))
    return [list(limits) for _, limits in sorted(by_app.items()) if limits]


def quota_matrix(client: redis.Redis, policy: QuotaPolicy, now: int) -> list[MatrixRow]:
    """Every cap of the policy (providers, then models) and of the apps' keys, at event time ``now``."""
    return [
        matrix_row(client, limit, now, scope)
        for scope in _provider_scopes(policy) + _app_scopes(client)
        for limit in scope
    ]
