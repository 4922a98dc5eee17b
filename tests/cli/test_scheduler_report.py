"""`symphony scheduler-report` against a real engine: the events go through the stream into ClickHouse, the
report reads them through the engine's query API (the analysts' sandbox), with a quota policy of the test's
own (OpenAI 3h windows of 100,000 tokens) so the figures are small enough to work out by hand."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis

from symphony import engine_client
from symphony.events import Decision, Event, Usage, new_id
from symphony.jobs import Job
from symphony.keys import forecast_key
from symphony.stream import publish
from tests.engineutil import ANALYST_TOKEN, BASE_TS, SHARDS, Engine

H = 3_600_000
T = TypeVar("T")
POLICY = {
    "version": "t",
    "providers": {"openai": {"subscription": {"window": "3h", "reset": "fixed", "tokens": 100_000}}},
}


def attempt(at: int, tokens: int, job: Job | None = None) -> list[Event]:
    decision_id = new_id(at)
    decision = Decision(
        event_id=new_id(at),
        ts=at,
        decision_id=decision_id,
        request_id=decision_id,
        app="tests",
        task="chat",
        candidates=["openai/gpt-4o-mini"],
        probabilities=[1.0],
        provider="openai",
        model="gpt-4o-mini",
        policy="champion",
        policy_version="v1",
        propensity=1.0,
        overrides=job.decision_overrides() if job is not None else {},
    )
    usage = Usage(
        event_id=new_id(at + 1),
        ts=at + 1,
        decision_id=decision_id,
        app="tests",
        provider="openai",
        model="gpt-4o-mini",
        attempt=1,
        status="ok",
        ttfb_ms=1.0,
        latency_ms=2.0,
        input_tokens=tokens - 1_000,
        output_tokens=1_000,
        cost_usd=tokens / 1e5,
    )
    return [decision, usage]


def wait_for(read: Callable[[], T | None], timeout_s: float) -> T | None:
    deadline = time.monotonic() + timeout_s
    while (value := read()) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def report(engine: Engine, policy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REDIS_URL": engine.redis_url,
        "ENGINE_PORT": str(engine.port),
        "ANALYST_TOKEN": ANALYST_TOKEN,
        "QUOTA_POLICY_FILE": str(policy),
    }
    command = [sys.executable, "-m", "cli", "scheduler-report", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_two_periods_and_their_deltas_from_clickhouse(engine: Engine, tmp_path: Path) -> None:
    policy = tmp_path / "quotas.json"
    policy.write_text(json.dumps(POLICY))
    engine.start()
    late = Job("job_late", "tests", {}, BASE_TS + 90 * 60_000, 70_000, ("openai",), created_ms=BASE_TS)
    made = [
        *attempt(BASE_TS + H, 40_000),  # first period, window [0h, 3h): 40,000 + 80,000 = 120,000
        *attempt(BASE_TS + 2 * H, 80_000, late),  # answered 30 minutes after its deadline
        *attempt(BASE_TS + 7 * H, 90_000),  # second period, window [6h, 9h): 90,000
    ]
    client = redis.Redis.from_url(engine.redis_url)
    publish(client, made, SHARDS)
    # The engine learns the interactive forecast at start (nothing ingested yet: 0, and a note saying so).
    assert (
        wait_for(lambda: client.hget(forecast_key("openai"), "note"), 20)
        == b"no use in ClickHouse in the last 7 days: forecast 0"
    )
    client.close()
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", 3)

    ran = report(
        engine,
        policy,
        "--baseline",
        "2026-01-01T00:00..2026-01-01T06:00",
        "--compare",
        "2026-01-01T06:00..2026-01-01T12:00",
        "--json",
    )
    assert ran.returncode == 0, ran.stderr
    body = json.loads(ran.stdout)
    first, second, change = body["baseline"], body["compare"], body["deltas"]
    # First: two windows of 100,000, filled 100,000 + 0; 20,000 over, at 1.2 / 120,000 a token: 0.2.
    assert (first["utilisation"], first["overflow_tokens"], first["overflow_cost_usd"]) == (0.5, 20_000, 0.2)
    assert (first["jobs"], first["deadline_misses"], first["missed_jobs"]) == (1, 1, ["job_late"])
    # The optimum: the job (80,000 used) fits no window whole before its deadline (60,000 are left in the
    # first beside the 40,000 interactive), so it overflows; the windows hold 40,000 of 200,000.
    assert first["optimum"]["overflow_tokens"] == 80_000 and first["optimum_utilisation"] == 0.2
    assert (second["utilisation"], second["overflow_tokens"], second["jobs"]) == (0.45, 0, 0)
    assert change["utilisation"] == -0.05 and change["overflow_tokens"] == -20_000
    assert (change["overflow_change"], change["deadline_misses"]) == (-1.0, -1)

    text = report(
        engine,
        policy,
        "--baseline",
        "2026-01-01T00:00..2026-01-01T06:00",
        "--compare",
        "2026-01-01T06:00..2026-01-01T12:00",
    )
    assert text.returncode == 0, text.stderr
    assert re.search(r"openai\s+3h fixed\s+delta\s+-5\.0 pts\s+-20,000\s+-0\.2\b", text.stdout), text.stdout
    assert "overflow -20,000 tokens (-100.0%)" in text.stdout

    bad = report(engine, policy, "--baseline", "last_fortnight")
    assert bad.returncode == 2 and "last_fortnight" in bad.stderr
