"""`symphony scheduler-plan`: the jobs queued in Redis planned per provider and window; nothing written."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import redis
import redis.asyncio as aioredis

from symphony.clock import publish_clock
from symphony.jobs import Job, JobStore
from symphony.keys import JOBS_VERSION, eta_key
from symphony.quotas import load_quota_policy
from symphony.redis_server import RedisServer

H = 3_600_000
DAY0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)
NOW = DAY0 + 2 * H + 40 * 60_000  # 02:40 UTC
REQUEST = {"model": "auto", "messages": [{"role": "user", "content": "summarise"}]}


def queue(redis_server: RedisServer, jobs: list[Job]) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_server.url)
        for job in jobs:
            await JobStore(client).create(job)
        await client.aclose()

    asyncio.run(main())


def plan(redis_server: RedisServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_server.url}
    return subprocess.run(
        [sys.executable, "-m", "cli", "scheduler-plan", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_plan_per_window_from_the_queue_in_redis(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    publish_clock(redis_client, start_ms=NOW, speed=1e-9)  # the clock stands still at NOW
    policy = load_quota_policy()
    tokens = next(
        lim for lim in policy.limits("openai", "") if lim.window.name == "3h" and lim.metric == "tokens"
    )
    redis_client.hset(tokens.key, tokens.window.buckets(NOW)[0], tokens.cap - 500)  # nearly full now
    redis_client.hset(eta_key("gemini", "tokens", "1d"), "burn_per_min", 1000)  # interactive use forecast
    queue(
        redis_server,
        [
            Job("job_a", "app", REQUEST, NOW + 4 * H, 2_000_000, ("openai",)),
            Job("job_b", "app", REQUEST, NOW + 4 * H, 3_000_000, ("gemini",)),
            Job("job_c", "app", REQUEST, NOW + 600_000, 1_000, ("openai",)),  # no room before its deadline
        ],
    )
    version = redis_client.get(JOBS_VERSION)
    done = plan(redis_server, "--horizon", "12h", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["now_ms"], shown["horizon_ms"], shown["queued_jobs"], shown["scheduler_enabled"]) == (
        NOW,
        12 * H,
        3,
        True,
    )
    assert (shown["overflow_jobs"], shown["overflow_tokens"]) == (1, 1_000)
    windows = {(w["provider"], w["window_start"]): w for w in shown["windows"]}
    current = windows[("openai", DAY0)]
    assert (current["budget"], current["used"], current["jobs"], current["planned_tokens"]) == (
        tokens.cap,
        tokens.cap - 500,
        0,
        0,
    )
    following = windows[("openai", DAY0 + 3 * H)]
    assert (following["jobs"], following["planned_tokens"]) == (1, 2_000_000)
    assert following["utilisation"] == round(2_000_000 / tokens.cap, 6) and following["overflow_tokens"] == 0
    gemini = windows[("gemini", DAY0)]
    forecast = 1000 * (DAY0 + 24 * H - NOW) // 60_000
    assert (gemini["forecast"], gemini["jobs"], gemini["planned_tokens"]) == (forecast, 1, 3_000_000)
    assert {provider for provider, _ in windows} == {"openai", "gemini"}  # no first-use window opened
    # A dry run writes nothing: the jobs are still queued, the queue unchanged.
    assert redis_client.get(JOBS_VERSION) == version
    assert {redis_client.hget(f"symphony:jobs:{{jobs}}:job:{i}", "state") for i in ("job_a", "job_b")} == {
        b"queued"
    }

    table = plan(redis_server, "--horizon", "12h", "--dry-run")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == [
        "provider",
        "window_start",
        "window_end",
        "budget",
        "used",
        "forecast",
        "jobs",
        "planned_tokens",
        "utilisation",
        "overflow_tokens",
    ]
    assert "3 queued jobs at 2026-03-02 02:40 UTC, horizon 12h" in table.stdout
    assert "overflow (sent at once): 1 jobs, 1,000 tokens" in table.stdout


def test_with_the_scheduler_off_every_job_is_overflow_sent_at_once(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    env = {**os.environ, "REDIS_URL": redis_server.url}
    flags = subprocess.run(
        [sys.executable, "-m", "cli", "flags", "--scheduler", "off", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert flags.returncode == 0 and json.loads(flags.stdout)["scheduler_enabled"] is False, flags.stderr
    assert redis_client.hget("symphony:flags", "scheduler_enabled") == b"false"
    queue(redis_server, [Job("job_a", "app", REQUEST, 2**41, 2_000, ("openai",))])
    shown = json.loads(plan(redis_server, "--json").stdout)
    assert shown["scheduler_enabled"] is False and shown["windows"] == []
    assert (shown["overflow_jobs"], shown["overflow_tokens"]) == (1, 2_000)


def test_a_bad_horizon_is_a_usage_error(redis_server: RedisServer) -> None:
    done = plan(redis_server, "--horizon", "twelve")
    assert done.returncode == 2 and "--horizon" in done.stderr
