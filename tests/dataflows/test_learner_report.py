"""``GET /learner/metrics`` end to end: decisions, usage and feedback in chDB, the challenger in Redis.

The engine's API serves the report over a real store and a real Redis. The
expected numbers are worked out here from the events the test wrote: utility by
the champion file's formula, which decisions await feedback, which window
breached its SLO.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from dataflows.api_auth import Tokens
from dataflows.learner_report import LearnerReport
from dataflows.query_api import QueryApi, create_app
from learner.promotion import WINDOW_MS
from sinks.clickhouse import ALERTS, EVENT_TABLES, alerts_to_arrow, to_arrow, write
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore
from symphony import clock, engine_client
from symphony.alerts import Alert
from symphony.catalog import load_catalog, load_policy
from symphony.engine_client import EngineError
from symphony.keys import CHALLENGER_KEY
from symphony.serving import ChallengerPolicy
from symphony.stream import publish
from tests.engineutil import ADMIN_TOKEN, ANALYST_TOKEN, SHARDS, Engine
from tests.logged_requests import logged_request

POLICY = load_policy(Path(__file__).parents[2] / "policies" / "champion.json", load_catalog())
ARMS = ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]


def request(
    ts: int, *, chosen: int, policy: str, score: float | None, served: bool = True, latency: float = 500.0
) -> dict[str, list[object]]:
    """One request's events by table; cost 0.001 USD and ``latency`` ms, which the utilities below assume."""
    events = logged_request(
        ts, ARMS[chosen], ARMS, score, served=served, policy=policy, latency_ms=latency, cost_usd=0.001
    )
    tables: dict[str, list[object]] = {"decisions": [], "usage": [], "feedback": []}
    for event in events:
        tables[EVENT_TABLES[event.type]].append(event)
    return tables


@pytest.fixture
def api(served: tuple[str, ClickHouseStore]) -> str:
    return served[0]


@pytest.fixture
def served(tmp_path: Path, redis_client: redis.Redis) -> Iterator[tuple[str, ClickHouseStore]]:
    """The report's API over a store holding two days of requests (the store, to add to it)."""
    store = ClickHouseStore.connect(f"chdb://{tmp_path / 'chdb'}", log_dir=tmp_path / "logs")
    migrate(store)
    day = clock.wall_ms() // WINDOW_MS * WINDOW_MS - WINDOW_MS  # yesterday, UTC
    batches = []
    for i in range(40):  # yesterday: arm 0 scores 1.0, arm 1 scores 0.0; every other one by the challenger
        batches.append(
            request(
                day + i * 1000,
                chosen=i % 2,
                policy="challenger" if i % 4 < 2 else "champion",
                score=1.0 - (i % 2),
            )
        )
    batches.append(request(day + 50_000, chosen=0, policy="champion", score=None))  # awaiting feedback
    batches.append(request(day + 60_000, chosen=0, policy="override", score=1.0))  # pinned: left out
    for i in range(10):  # the day before: half the requests fail, an SLO breach
        batches.append(
            request(day - WINDOW_MS + i, chosen=0, policy="champion", score=0.5, served=i % 2 == 0)
        )
    tables = {name: to_arrow(name, [e for b in batches for e in b[name]])[0] for name in batches[0]}
    write(store, [tables])
    app = create_app(
        store, tokens=Tokens(ADMIN_TOKEN, ANALYST_TOKEN), learner=LearnerReport(store, redis_client, POLICY)
    )
    server = QueryApi(app, 0)
    server.start()
    try:
        yield f"http://analyst:{ANALYST_TOKEN}@127.0.0.1:{server.port}", store
    finally:
        server.stop()
        store.close()


def test_the_report_evaluates_the_published_challenger_per_window(
    api: str, redis_client: redis.Redis
) -> None:
    redis_client.set(CHALLENGER_KEY, orjson.dumps({"version": "always-0", "weights": {ARMS[0]: 1.0}}))
    report = engine_client.learner_metrics(api, days=3, resamples=200)
    assert report["challenger_version"] == "always-0"
    assert report["champion_version"] == POLICY.version
    assert report["awaiting_feedback"] == 1
    windows = {w["start_ms"]: w for w in report["windows"] if w["group"] == "all"}
    older, yesterday = sorted(windows)
    assert yesterday - older == WINDOW_MS
    weights = POLICY.utility_weights("chat")
    # cost 0.001 of a 0.01 scale, latency 0.5 s of a 10 s scale
    rest = weights.cost * (1 - 0.001 / weights.cost_scale_usd) + weights.latency * (
        1 - 0.5 / weights.latency_scale_s
    )
    good, bad = weights.quality + rest, rest
    day = windows[yesterday]
    assert day["samples"] == 40 and day["champion"] == pytest.approx((good + bad) / 2)
    # The challenger always picks arm 0 (worth `good`); every logged propensity is 0.5, so SNIPS is exact.
    assert day["snips"]["value"] == pytest.approx(good)
    assert day["ips"]["value"] == pytest.approx(good)
    assert day["slo"]["breached"] is False
    assert windows[older]["slo"]["error_rate"] == pytest.approx(0.5)
    assert windows[older]["slo"]["breached"] is True
    assert report["promotion"]["candidate"] is False
    assert any("SLO" in reason for reason in report["promotion"]["reasons"])

    # The evaluation is kept in learner_metrics, one row per window, group and estimator, for analysts.
    kept = engine_client.query(
        api,
        "SELECT toUnixTimestamp64Milli(window_start), estimator, value, low, high, challenger_version, "
        "slo_breached, promotion_candidate FROM learner_metrics WHERE group = 'all' "
        "ORDER BY window_start, estimator",
    )
    expected = [
        [
            start,
            name,
            w[name]["value"],
            w[name]["low"],
            w[name]["high"],
            "always-0",
            w["slo"]["breached"],
            False,
        ]
        for start, w in sorted(windows.items())
        for name in ("dr", "ips", "snips")
    ]
    assert kept.rows == expected


def test_time_is_the_shared_clocks_and_a_window_in_progress_is_shown_but_not_judged(
    api: str, redis_client: redis.Redis
) -> None:
    redis_client.set(CHALLENGER_KEY, orjson.dumps({"version": "always-0", "weights": {ARMS[0]: 1.0}}))
    yesterday = clock.wall_ms() // WINDOW_MS * WINDOW_MS - WINDOW_MS
    clock.publish_clock(redis_client, start_ms=yesterday + WINDOW_MS // 2, speed=1.0)  # yesterday noon
    report = engine_client.learner_metrics(api, days=3, resamples=100)
    assert report["as_of_ms"] - (yesterday + WINDOW_MS // 2) < 60_000
    ended = {w["start_ms"]: w["ended"] for w in report["windows"] if w["group"] == "all"}
    assert ended == {yesterday - WINDOW_MS: True, yesterday: False}
    # Only the day before yesterday is judged: one window of the two the rule needs.
    assert "1 of 2 windows so far" in report["promotion"]["reasons"]
    day = f"{clock.utc_datetime(yesterday):%Y-%m-%d}"
    assert not any(day in reason for reason in report["promotion"]["reasons"])


def test_an_slo_alert_that_fired_in_a_window_is_a_breach_of_it(
    served: tuple[str, ClickHouseStore], redis_client: redis.Redis
) -> None:
    api, store = served
    yesterday = clock.wall_ms() // WINDOW_MS * WINDOW_MS - WINDOW_MS
    fired = Alert(
        "firing",
        "error_rate",
        "grok",
        "grok-3-mini",
        0.3,
        0.02,
        yesterday + 3_600_000,
        yesterday + 3_600_000,
        300_000,
        40,
        "",
        "",
        first=True,
    )
    write(store, [{ALERTS: alerts_to_arrow([fired], "")}])
    redis_client.set(CHALLENGER_KEY, orjson.dumps({"version": "always-0", "weights": {ARMS[0]: 1.0}}))
    report = engine_client.learner_metrics(api, days=3, resamples=100)
    window = next(w for w in report["windows"] if w["start_ms"] == yesterday and w["group"] == "all")
    assert window["slo_alerts"] == 1 and window["slo"]["breached"] is False  # its own p95 and errors are fine
    day = f"{clock.utc_datetime(yesterday):%Y-%m-%d}"
    assert f"window {day} 00:00 UTC: an SLO was breached" in report["promotion"]["reasons"]


def test_bad_parameters_and_a_malformed_challenger_get_clear_errors(
    api: str, redis_client: redis.Redis
) -> None:
    with pytest.raises(EngineError, match="`days` must be a whole number from 1 to 90"):
        engine_client.learner_metrics(api, days=0, resamples=200)
    redis_client.set(CHALLENGER_KEY, b'{"version": "v", "weights": {"a/b": -1}}')
    with pytest.raises(EngineError, match=r"\(409\).*non-negative"):
        engine_client.learner_metrics(api, days=3, resamples=200)


def test_the_cli_prints_a_running_engines_report_and_keeps_it_in_runs(
    engine: Engine, redis_client: redis.Redis, tmp_path: Path
) -> None:
    engine.start()
    day = clock.wall_ms() // WINDOW_MS * WINDOW_MS - WINDOW_MS
    batches = [request(day + i, chosen=i % 2, policy="champion", score=1.0) for i in range(30)]
    publish(redis_client, [e for b in batches for name in b for e in b[name]], SHARDS)  # type: ignore[misc]
    engine_client.wait_for_count(engine.url, "SELECT count() FROM feedback FINAL", 30)
    # The learner (on by default) publishes a challenger from these; the report evaluates that one.
    deadline = clock.monotonic() + 30
    while (published := redis_client.get(CHALLENGER_KEY)) is None and clock.monotonic() < deadline:
        time.sleep(0.1)
    assert published is not None, "the learner published no challenger"
    challenger_version = ChallengerPolicy.from_json(published).version
    env = {**os.environ, "ENGINE_PORT": str(engine.port), "ANALYST_TOKEN": ANALYST_TOKEN}
    command = [sys.executable, "-m", "cli", "learner-metrics", "--days", "2", "--resamples", "100"]
    table = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["window", "group", "n"]
    assert "promotion candidate: no" in table.stdout and "1 of 2 windows so far" in table.stdout
    as_json = subprocess.run([*command, "--json"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert json.loads(as_json.stdout)["decisions"] == 30
    kept = (tmp_path / "runs" / "learner-metrics.jsonl").read_text().splitlines()
    assert len(kept) == 2 and json.loads(kept[1])["challenger_version"] == challenger_version
