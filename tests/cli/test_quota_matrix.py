"""`symphony quotas-matrix`: every provider and window, from the reservation buckets and published ETAs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis

from cli.quota_matrix import format_ms, quota_matrix
from symphony.quotas import QuotaStore, load_quota_policy
from symphony.redis_server import RedisServer

NOW = 1_767_225_600_000 + 35_000  # 35 s into a minute


def test_matrix_lists_every_provider_and_window_with_etas(redis_client: redis.Redis) -> None:
    policy = load_quota_policy()
    store = QuotaStore(redis_client)
    limits = policy.limits("openai", "gpt-4o-mini")
    store.reserve(limits, NOW - 20_000, provider="openai", model="gpt-4o-mini", tokens=600)
    store.reserve(limits, NOW, provider="openai", model="gpt-4o-mini", tokens=400)
    redis_client.set("symphony:caps:{openai}:requests:minute", 100, px=60_000)

    rows = {(r.provider, r.window, r.metric): r for r in quota_matrix(redis_client, policy, NOW)}
    assert {provider for provider, _, _ in rows} == set(policy.providers) and len(policy.providers) == 7
    minute_tokens = rows[("openai", "minute", "tokens")]
    assert (minute_tokens.used, minute_tokens.remaining) == (1000, minute_tokens.policy_cap - 1000)
    # The older reservation (bucket of NOW-20 s) leaves the minute window first.
    assert minute_tokens.reset_in_ms == ((NOW - 20_000) // 10_000 * 10_000 + 60_000) - NOW
    assert minute_tokens.exhaust_in_ms == int(minute_tokens.remaining / 1000 * 60_000)
    assert minute_tokens.source == "buckets"
    requests = rows[("openai", "minute", "requests")]
    assert (requests.runtime_cap, requests.used, requests.remaining) == (100, 2, 98)
    assert rows[("openai", "3h", "tokens")].reset_in_ms == 3 * 3_600_000 - NOW % (3 * 3_600_000)
    assert (
        rows[("gemini", "day", "tokens")].used == 0 and rows[("gemini", "day", "tokens")].reset_in_ms is None
    )


def test_published_burn_rate_drives_exhaustion(redis_client: redis.Redis) -> None:
    policy = load_quota_policy()
    redis_client.hset("symphony:eta:{grok}:tokens:day", "burn_per_min", "5000")
    row = next(
        r
        for r in quota_matrix(redis_client, policy, NOW)
        if (r.provider, r.window, r.metric) == ("grok", "day", "tokens")
    )
    assert row.source == "dataflow"
    assert row.exhaust_in_ms == int(row.remaining / 5000 * 60_000)


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
    assert {row["provider"] for row in rows} == set(load_quota_policy().providers)
    assert {"reset_in", "exhaust_in", "runtime_cap", "source"} <= set(rows[0])
