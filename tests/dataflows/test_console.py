"""The console on a real engine: its pages and live feed behind the admin boundary, and what the feed says.

Expected values are counted here from the events the test sends and from the policy file, not by the feed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from dataflows.console_feed import judge
from dataflows.console_routes import SharedSnapshot
from proxy.breaker_states import BreakerStates
from proxy.routing.health import Health, Rules
from symphony import clock, engine_client
from symphony.alerts import SloThresholds
from symphony.events import Event
from symphony.quotas.rules import QUOTAS_FILE
from symphony.redis_client import async_redis
from symphony.stream import publish
from tests.engineutil import ADMIN_TOKEN, ANALYST_TOKEN, BASE_TS, SHARDS, SPANS_TOKEN, Engine, pair

NOW = BASE_TS + 200_000  # the shared clock's time in the test (event time)
SLO = SloThresholds(p95_latency_ms=5000.0, error_rate=0.1, window_ms=60_000, step_ms=10_000, min_attempts=5)


def first_event(engine: Engine, token: str) -> tuple[str, dict[str, object]]:
    """The first server-sent event of /console/events: its name and its data."""
    headers = {"authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{engine.bare_url}/console/events", headers=headers, timeout=30) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        lines: list[str] = []
        for line in answer.iter_lines():
            if not line and lines:
                break
            lines.append(line)
    fields = dict(line.split(": ", 1) for line in lines)
    return fields["event"], json.loads(fields["data"])


def gemini_attempts() -> list[Event]:
    """Ten attempts on gemini in the window: 5 ok (100..104 ms), 4 failed (5xx, timeout, error), a 429."""
    statuses = ["ok"] * 5 + ["5xx", "5xx", "timeout", "error", "429"]
    sent: list[Event] = []
    for i, status in enumerate(statuses):
        decision, usage = pair(100_000 + i)
        policy = "challenger" if i % 4 == 0 else "champion"  # i = 0, 4, 8: 3 of 10
        arm = {"provider": "gemini", "model": "gemini-2.5-flash"}
        sent.append(decision.model_copy(update={**arm, "policy": policy}))
        sent.append(usage.model_copy(update={**arm, "status": status, "latency_ms": 100.0 + i}))
    return sent


def publish_breakers(redis_url: str) -> None:
    """Two proxy replicas: one has ejected gemini (two failures of two), the other has not."""
    rules = Rules(10.0, 2, 0.5, 2, cooldown_s=60.0, max_ejected_share=0.5, panic_share=0.3)
    pool = [("gemini", "gemini/gemini-2.5-flash"), ("openai", "openai/gpt-4o"), ("grok", "grok/grok-3")]
    broken, fine = Health(rules, pool), Health(rules, pool)
    for _ in range(2):
        broken.record("gemini", "gemini/gemini-2.5-flash", "failure", time.monotonic())

    async def publish_both() -> None:
        client = async_redis(redis_url)
        await BreakerStates(client, broken, "replica-1").publish()
        await BreakerStates(client, fine, "replica-2").publish()
        await client.aclose()

    asyncio.run(publish_both())


def test_the_console_and_its_feed_behind_the_admin_boundary(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLO_MIN_ATTEMPTS", "5")
    monkeypatch.setenv("SLO_WINDOW_S", "300")
    engine.start()
    client = redis.Redis.from_url(engine.redis_url)
    clock.publish_clock(client, start_ms=NOW, speed=0.001)  # all but still: the window is the test's
    publish(client, gemini_attempts(), SHARDS)
    client.close()
    publish_breakers(engine.redis_url)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", 10)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", 10)
    base = engine.bare_url

    # The pages: a browser without a token is asked for one (Basic); both reader roles get them.
    refused = httpx.get(f"{base}/console")
    assert (
        refused.status_code == 401 and refused.headers["www-authenticate"] == 'Basic realm="Symphony console"'
    )
    for token in (ADMIN_TOKEN, ANALYST_TOKEN):
        page = httpx.get(f"{base}/console/matrix", auth=("someone", token))
        assert page.status_code == 200 and '<div id="root">' in page.text
        script = re.search(r'src="(/console/assets/[^"]+\.js)"', page.text)
        assert script and httpx.get(base + script.group(1), auth=("x", token)).status_code == 200
    assert (
        httpx.get(f"{base}/console/events", headers={"authorization": f"Bearer {SPANS_TOKEN}"}).status_code
        == 403
    )
    # The reads the views make, under /console/ (where the browser sends the pages' credentials).
    counted = httpx.post(
        f"{base}/console/query", json={"sql": "SELECT count() FROM usage"}, auth=("x", ANALYST_TOKEN)
    )
    assert counted.status_code == 200 and counted.json()["rows"] == [[10]]
    refused_write = httpx.post(
        f"{base}/console/query", json={"sql": "DROP TABLE usage"}, auth=("x", ANALYST_TOKEN)
    )
    assert refused_write.status_code == 400
    assert httpx.get(f"{base}/console/traces/nonsense", auth=("x", ANALYST_TOKEN)).status_code == 400
    assert (
        httpx.post(f"{base}/console/query", json={"sql": "SELECT 1"}, auth=("x", SPANS_TOKEN)).status_code
        == 403
    )
    for probe in ("..%2f..%2fpyproject.toml", ".hidden.js", "nothing.js"):
        assert httpx.get(f"{base}/console/assets/{probe}", auth=("x", ADMIN_TOKEN)).status_code == 404, probe

    kind, snapshot = first_event(engine, ANALYST_TOKEN)
    assert kind == "snapshot"
    policy = json.loads(QUOTAS_FILE.read_text())
    assert snapshot["providers"] == list(policy["providers"])
    assert len(snapshot["providers"]) == 7  # type: ignore[arg-type]
    rows = {(r["scope"], r["window"], r["metric"]): r for r in snapshot["matrix"]}  # type: ignore[union-attr, index]
    assert (
        rows[("openai", "minute", "requests")]["policy_cap"]
        == policy["providers"]["openai"]["caps"]["requests"]["minute"]
    )
    assert ("deepseek", "day", "tokens") in rows
    health = {h["provider"]: h for h in snapshot["health"]}  # type: ignore[union-attr, index]
    # 9 attempts count (the 429 does not), 4 of them failed; the p95 of 100..104 is the 5th of 5: 104.
    assert health["gemini"] == {
        "provider": "gemini",
        "attempts": 9,
        "error_rate": pytest.approx(4 / 9),
        "p95_ms": 104.0,
        "state": "unhealthy",
    }
    assert health["openai"]["state"] == "idle" and health["openai"]["attempts"] == 0
    # The proxies' breakers beside it: gemini open on one replica of two; a provider no replica has, unknown.
    breakers = snapshot["breakers"]
    assert breakers["gemini"] == {  # type: ignore[index]
        "state": "open",
        "replicas": 2,
        "closed": 1,
        "open": 1,
        "half-open": 0,
        "reasons": ["gemini is ejected for 60 s: 2 of 2 attempts failed in 10 s"],
    }
    assert breakers["openai"]["state"] == "closed" and breakers["deepseek"]["state"] == "unknown"  # type: ignore[index]
    assert snapshot["split"] == {"challenger": pytest.approx(0.3), "champion": pytest.approx(0.7)}
    assert snapshot["now_ms"] >= NOW


@pytest.mark.parametrize(
    ("attempts", "failures", "answered", "p95", "state"),
    [
        (0, 0, 0, 0.0, "idle"),
        (4, 4, 0, 0.0, "healthy"),  # too few attempts to judge (min 5)
        (10, 1, 9, 100.0, "unhealthy"),  # 0.1 is at the threshold
        (10, 0, 10, 5000.0, "healthy"),  # at the latency objective, not over it
        (10, 0, 10, 5000.1, "slow"),
        (10, 0, 4, 9000.0, "healthy"),  # too few answered to judge the p95
    ],
)
def test_a_providers_state_follows_the_slo_thresholds(
    attempts: int, failures: int, answered: int, p95: float, state: str
) -> None:
    assert judge(attempts, failures, answered, p95, SLO).state == state


def test_every_open_feed_shares_one_snapshot_per_tick() -> None:
    taken: list[float] = []

    def take() -> dict[str, object]:
        taken.append(time.monotonic())
        time.sleep(0.05)  # a snapshot's queries take a while: callers meanwhile wait and share it
        return {"n": len(taken)}

    shared = SharedSnapshot(take, max_age_s=0.5)
    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(lambda _: shared(), range(64)))
    assert len(taken) == 1 and all(s == {"n": 1} for s in seen)
    time.sleep(0.5)
    assert shared() == {"n": 2}  # a tick later, a fresh one
