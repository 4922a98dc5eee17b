"""`symphony quotas-matrix`: every cap (providers, models, apps) from the reservation buckets, with an
ETA to exhaustion only where the burn rate fills the window before it resets.

Expected values are worked out by hand in each test from the policy's numbers, not by the code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis

from symphony.app_keys import AppKey, create_key, revoke_key
from symphony.quotas import NoEta, QuotaPolicy, QuotaStore, load_quota_policy
from symphony.quotas.matrix import MatrixRow, format_ms, quota_matrix
from symphony.redis_server import RedisServer

MIDNIGHT = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC
NOW = MIDNIGHT + 35_000  # 35 s into a minute, a 3 h window and a day


def _rows(
    client: redis.Redis, now: int = NOW, policy: QuotaPolicy | None = None
) -> dict[tuple[str, str, str], MatrixRow]:
    rows = quota_matrix(client, policy or load_quota_policy(), now)
    return {(r.scope, r.window, r.metric): r for r in rows}


def _policy_with(provider: str, metric: str, window: str, cap: int) -> QuotaPolicy:
    data = json.loads(load_quota_policy().model_dump_json())
    data["providers"][provider]["caps"][metric][window] = cap
    return QuotaPolicy.model_validate(data)


def test_matrix_lists_every_provider_and_window_with_used_and_reset(redis_client: redis.Redis) -> None:
    policy = load_quota_policy()
    store = QuotaStore(redis_client)
    limits = policy.limits("openai", "gpt-4o-mini")
    store.reserve(limits, NOW - 20_000, provider="openai", model="gpt-4o-mini", tokens=600)
    store.reserve(limits, NOW, provider="openai", model="gpt-4o-mini", tokens=400)
    redis_client.set("symphony:caps:{openai}:requests:minute", 100, px=60_000)

    rows = _rows(redis_client)
    assert {scope for scope, _, _ in rows if "/" not in scope} == set(policy.providers)
    minute_tokens = rows[("openai", "minute", "tokens")]
    assert (minute_tokens.used, minute_tokens.remaining) == (1000, 2_000_000 - 1000)
    # The older reservation (bucket of NOW-20 s, i.e. the one starting at MIDNIGHT+10 s) leaves at +70 s.
    assert minute_tokens.reset_in_ms == 70_000 - 35_000
    assert minute_tokens.source == "buckets"
    requests = rows[("openai", "minute", "requests")]
    assert (requests.runtime_cap, requests.used, requests.remaining) == (100, 2, 98)
    assert rows[("openai", "3h", "tokens")].reset_in_ms == 3 * 3_600_000 - 35_000
    gemini_day = rows[("gemini", "day", "tokens")]
    assert (gemini_day.used, gemini_day.reset_in_ms, gemini_day.exhaust_in_ms) == (0, None, None)
    assert gemini_day.no_eta == NoEta.IDLE


def test_an_idle_or_slow_window_has_no_eta(redis_client: redis.Redis) -> None:
    """1,000 tokens in the last minute against a 2,000,000 minute cap: the old matrix said "exhaust in
    33h19m" (1,999,000 / 1,000 minutes) and 3.8 years for the week; at 1,000 a minute no window ever fills."""
    QuotaStore(redis_client).reserve(
        load_quota_policy().limits("openai", "gpt-4o-mini"),
        NOW,
        provider="openai",
        model="gpt-4o-mini",
        tokens=1000,
    )
    rows = _rows(redis_client)
    for window in ("minute", "day", "week"):
        row = rows[("openai", window, "tokens")]
        assert (row.exhaust_in_ms, row.no_eta) == (None, NoEta.NEVER), window
    # 1,000 a minute for the rest of the 3 h window is ~179,000 of 60,000,000: it resets first
    assert rows[("openai", "3h", "tokens")].no_eta == NoEta.RESETS_FIRST
    assert all(r.exhaust_in_ms is None for r in rows.values())


def test_a_rolling_window_fills_when_its_burn_rate_outruns_the_buckets_leaving(
    redis_client: redis.Redis,
) -> None:
    # grok: 1,000 tokens a minute; 100 tokens in each of the minute's six 10 s buckets (600 used)
    policy = _policy_with("grok", "tokens", "minute", 1000)
    now = MIDNIGHT + 5_000  # 5 s into the current bucket
    limits = policy.limits("grok", "grok-3-mini")
    for age in range(6):
        QuotaStore(redis_client).reserve(
            limits, now - age * 10_000, provider="grok", model="grok-3-mini", tokens=100
        )
    # The last minute holds 600 tokens: 600 a minute is 10 a second, below the cap over a whole window
    row = _rows(redis_client, now, policy)[("grok", "minute", "tokens")]
    assert (row.used, row.exhaust_in_ms, row.no_eta) == (600, None, NoEta.NEVER)

    # Published at 1,200 a minute (20 a second): 600 + 100 by the edge at +5 s, where 100 leaves (600);
    # +200 and -100 at +15 s (700), at +25 s (800); then 200 more in 10 s: full at +35 s.
    redis_client.hset("symphony:eta:{grok}:tokens:minute", "burn_per_min", "1200")
    row = _rows(redis_client, now, policy)[("grok", "minute", "tokens")]
    assert (row.source, row.exhaust_in_ms, row.no_eta) == ("dataflow", 35_000, None)


def test_published_burn_rate_fills_a_day_only_if_a_day_of_it_reaches_the_cap(
    redis_client: redis.Redis,
) -> None:
    redis_client.hset("symphony:eta:{grok}:tokens:day", "burn_per_min", "5000")  # 7.2M a day of 200M
    row = _rows(redis_client)[("grok", "day", "tokens")]
    assert (row.source, row.exhaust_in_ms, row.no_eta) == ("dataflow", None, NoEta.NEVER)
    # 200,000 a minute fills the empty 200M day window in 1,000 minutes, before any of it leaves
    redis_client.hset("symphony:eta:{grok}:tokens:day", "burn_per_min", "200000")
    row = _rows(redis_client)[("grok", "day", "tokens")]
    assert (row.exhaust_in_ms, row.no_eta) == (1000 * 60_000, None)


def test_a_fixed_window_has_an_eta_only_before_it_resets(redis_client: redis.Redis) -> None:
    # openai's 3 h window (60M tokens) resets at 03:00, 2 h 59 min 25 s from NOW
    redis_client.hset("symphony:eta:{openai}:tokens:3h", "burn_per_min", "400000")  # full in 150 min
    row = _rows(redis_client)[("openai", "3h", "tokens")]
    assert (row.exhaust_in_ms, row.no_eta) == (150 * 60_000, None)
    redis_client.hset("symphony:eta:{openai}:tokens:3h", "burn_per_min", "300000")  # 200 min: after 03:00
    row = _rows(redis_client)[("openai", "3h", "tokens")]
    assert (row.exhaust_in_ms, row.no_eta) == (None, NoEta.RESETS_FIRST)


def test_model_caps_are_rows_of_their_own(redis_client: redis.Redis) -> None:
    policy = load_quota_policy()
    QuotaStore(redis_client).reserve(
        policy.limits("openai", "gpt-4o"), NOW, provider="openai", model="gpt-4o", tokens=3000
    )
    rows = _rows(redis_client)
    model = rows[("openai/gpt-4o", "minute", "tokens")]
    assert (model.policy_cap, model.used, model.remaining) == (300_000, 3000, 297_000)
    assert rows[("openai/gpt-4o", "minute", "requests")].used == 1
    assert rows[("openai", "minute", "tokens")].used == 3000  # the provider's cap counts it too
    assert {scope for scope, _, _ in rows if "/" in scope} == {"openai/gpt-4o"}


def test_app_budgets_and_rates_from_the_live_keys(redis_client: redis.Redis) -> None:
    policy = load_quota_policy()
    _, billing = create_key(
        redis_client,
        AppKey(prefix="", app="billing", created_ms=NOW, budget_usd_day=5.0, budget_usd_month=100.0, rpm=600),
    )
    _, gone = create_key(redis_client, AppKey(prefix="", app="gone", created_ms=NOW, rpm=10))
    revoke_key(redis_client, gone.prefix, NOW)
    limits = billing.limits() + policy.limits("openai", "gpt-4o-mini")
    QuotaStore(redis_client).reserve(
        limits, NOW, provider="openai", model="gpt-4o-mini", tokens=10, cost_micros=1_000_000
    )

    rows = _rows(redis_client)
    assert {scope for scope, _, _ in rows if scope.startswith("app:")} == {"app:billing"}
    day = rows[("app:billing", "1d", "usd")]
    assert (day.policy_cap, day.used, day.remaining) == (5.0, 1.0, 4.0)
    assert day.reset_in_ms == 86_400_000 - 35_000
    # $1 in the day's first 35 s: at that rate the $4 left go in 140 s, long before midnight
    assert (day.source, day.exhaust_in_ms, day.no_eta) == ("window average", 140_000, None)
    month = rows[("app:billing", "month", "usd")]
    assert (month.policy_cap, month.used, month.remaining) == (100.0, 1.0, 99.0)
    assert month.reset_in_ms == 31 * 86_400_000 - 35_000  # January
    assert month.exhaust_in_ms == 99 * 35_000
    rpm = rows[("app:billing", "minute", "requests")]
    assert (rpm.policy_cap, rpm.used, rpm.source, rpm.no_eta) == (600, 1, "buckets", NoEta.NEVER)


def test_format_ms_reads_like_a_duration() -> None:
    assert [format_ms(v) for v in (None, 850, 42_000, 250_000, 7_500_000, 2 * 86_400_000 + 3_600_000)] == [
        "-",
        "850ms",
        "42s",
        "4m10s",
        "2h05m",
        "2d01h",
    ]


def test_cli_prints_json_rows(redis_server: RedisServer) -> None:
    env = {**os.environ, "REDIS_URL": redis_server.url}
    result = subprocess.run(
        [sys.executable, "-m", "cli", "quotas-matrix", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {row["scope"] for row in rows} >= set(load_quota_policy().providers) | {"openai/gpt-4o"}
    idle = next(
        row for row in rows if (row["scope"], row["window"], row["metric"]) == ("openai", "minute", "tokens")
    )
    assert (idle["exhaust_in"], idle["no_eta"], idle["runtime_cap"]) == (None, "idle", None)
