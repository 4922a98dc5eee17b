"""The analyst views and the Grafana board against real chDB: every view parses and answers on sample data,
and every panel of the board queries existing views and returns rows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sinks.clickhouse import LEARNER_METRICS, to_arrow, write
from sinks.clickhouse_schema import MIGRATIONS, VIEWS_DIR, migrate, sql_file
from sinks.clickhouse_store import ClickHouseStore
from sinks.learner_metrics import report_table
from symphony.events import Decision, Feedback, Usage, new_id

BOARD = Path(__file__).resolve().parents[1] / "dashboards" / "grafana" / "symphony.json"
PLUGIN = "grafana-clickhouse-datasource"
BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_VIEW_NAME = re.compile(r"^CREATE OR REPLACE VIEW (\w+)")
_TIME_FILTER = re.compile(r"\$__timeFilter\(((?:[^()]|\([^()]*\))+)\)")


def view_names() -> list[str]:
    statements = [s for path in sorted(VIEWS_DIR.glob("*.sql")) for s in sql_file(path)]
    return [m.group(1) for s in statements if (m := _VIEW_NAME.match(s))]


def decision(i: int, policy: str, fallbacks: list[str], served_by: str) -> Decision:
    ts = BASE_TS + i * 1000
    return Decision(
        event_id=new_id(ts),
        ts=ts,
        decision_id=f"d{i}",
        request_id=f"r{i}",
        app="chat-app" if i % 2 else "batch-app",
        task="chat",
        candidates=["openai/gpt-4o", "anthropic/claude"],
        probabilities=[0.8, 0.2],
        provider="openai",
        model="gpt-4o",
        policy=policy,  # type: ignore[arg-type]
        policy_version="v1",
        propensity=0.8 if policy == "champion" else 0.2,
        fallbacks=fallbacks,
        fallback_statuses=["429"] * len(fallbacks),
        served_by=served_by,
    )


def usage(i: int, status: str, latency: float, attempt: int = 1, provider: str = "openai") -> Usage:
    ts = BASE_TS + i * 1000 + attempt
    return Usage(
        event_id=new_id(ts),
        ts=ts,
        decision_id=f"d{i}",
        app="chat-app" if i % 2 else "batch-app",
        provider=provider,
        model="gpt-4o" if provider == "openai" else "claude",
        attempt=attempt,
        status=status,  # type: ignore[arg-type]
        ttfb_ms=latency / 4,
        latency_ms=latency,
        input_tokens=100,
        output_tokens=50,
        cost_usd=0.01,
        fallback_from="openai/gpt-4o" if attempt > 1 else "",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore.connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        migrate(store)
        decisions = [
            decision(0, "champion", [], "openai/gpt-4o"),
            decision(1, "champion", [], "openai/gpt-4o"),
            decision(2, "challenger", [], "openai/gpt-4o"),
            decision(3, "champion", ["openai/gpt-4o"], "anthropic/claude"),
        ]
        usages = [
            usage(0, "ok", 100.0),
            usage(1, "ok", 200.0),
            usage(2, "ok", 300.0),
            usage(3, "429", 20.0),
            usage(3, "ok", 400.0, attempt=2, provider="anthropic"),
        ]
        feedback = [
            Feedback(
                event_id=new_id(BASE_TS + i), ts=BASE_TS + i, decision_id=f"d{i}", score=s, source="user"
            )
            for i, s in [(0, 1.0), (1, 0.5)]
        ]
        batch = {
            "decisions": to_arrow("decisions", decisions)[0],
            "usage": to_arrow("usage", usages)[0],
            "feedback": to_arrow("feedback", feedback)[0],
        }
        write(store, [batch, batch])  # delivered twice: the views read FINAL
        for as_of, value in ((BASE_TS, 0.60), (BASE_TS + 3_600_000, 0.66)):  # two evaluations of one window
            store.insert_arrow(LEARNER_METRICS, report_table(learner_report(as_of, value)))
        yield store
    finally:
        store.close()


def rows(store: ClickHouseStore, sql: str) -> list[dict[str, Any]]:
    result = store.query(sql)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def learner_report(as_of_ms: int, dr: float) -> dict[str, Any]:
    """A learner report (``dataflows.learner_report``'s shape) with one window of the whole traffic."""
    estimate = {"value": dr, "low": dr - 0.03, "high": dr + 0.03, "samples": 400, "effective_samples": 180.0}
    window = {
        "start_ms": BASE_TS,
        "group": "all",
        "samples": 400,
        "champion": 0.5,
        "dr": estimate,
        "ips": estimate,
        "snips": estimate,
        "uplift_low": 0.1,
        "slo": {"p95_ms": 900.0, "error_rate": 0.01, "breached": False},
    }
    return {
        "as_of_ms": as_of_ms,
        "champion_version": "c1",
        "challenger_version": "learned-1",
        "windows": [window],
        "promotion": {"candidate": False, "reasons": []},
    }


def test_view_files_are_applied_by_a_migration() -> None:
    files = sorted(VIEWS_DIR.glob("*.sql"))
    assert [f.name for f in files] == ["001_analyst_views.sql", "002_learner_views.sql"]
    applied = {statement for migration in MIGRATIONS for statement in migration.statements}
    for path in files:
        assert set(sql_file(path)) <= applied, path.name
    assert len(view_names()) == len(set(view_names())) == 9


def test_every_view_answers_on_sample_data(store: ClickHouseStore) -> None:
    tables = {row[0] for row in store.query("SHOW TABLES").rows}
    for view in view_names():
        assert view in tables
        assert rows(store, f"SELECT * FROM {view}"), view
    assert migrate(store) == []  # applied once

    (openai,) = rows(store, "SELECT * FROM v_latency_hourly WHERE provider = 'openai'")
    assert (openai["attempts"], openai["error_rate"], openai["latency_p50_ms"]) == (4, 0.25, 200.0)
    assert 200.0 < openai["latency_p95_ms"] <= openai["latency_p99_ms"] <= 300.0
    chat = rows(store, "SELECT * FROM v_usage_hourly WHERE app = 'chat-app' AND provider = 'openai'")[0]
    assert (chat["attempts"], chat["requests"], chat["errors"], chat["rate_limited"]) == (2, 2, 1, 1)
    assert chat["latency_p99_ms"] == 200.0  # the 429 attempt's latency is not a latency of service
    cost = rows(store, "SELECT sum(cost_usd) AS c, sum(requests) AS r FROM v_cost_daily")[0]
    assert (round(cost["c"], 6), cost["r"]) == (0.05, 5)

    share = {
        r["policy"]: r["share"]
        for r in rows(store, "SELECT policy, sum(share) AS share FROM v_policy_share_hourly GROUP BY policy")
    }
    assert share == {"champion": 1.5, "challenger": 0.5}  # per app: 1/1 + 1/2 and 0 + 1/2
    mix = rows(store, "SELECT * FROM v_policy_mix_hourly WHERE policy = 'challenger'")[0]
    assert (mix["decisions"], mix["min_propensity"], mix["inverse_propensity_sum"]) == (1, 0.2, 5.0)

    fallbacks = rows(store, "SELECT * FROM v_decision_fallbacks_hourly WHERE with_fallback > 0")
    assert [(r["chosen"], r["served_by"], r["fallback_rate"]) for r in fallbacks] == [
        ("openai/gpt-4o", "anthropic/claude", 1.0)
    ]
    (path,) = rows(store, "SELECT * FROM v_fallbacks_hourly")
    assert (path["fallback_from"], path["arm"], path["attempt"], path["attempts"]) == (
        "openai/gpt-4o",
        "anthropic/claude",
        2,
        1,
    )
    scores = rows(
        store, "SELECT sum(feedback) AS n, sum(mean_score * feedback) AS total FROM v_feedback_hourly"
    )
    assert scores == [{"n": 2, "total": 1.5}]

    learned = rows(store, "SELECT * FROM v_learner_windows WHERE estimator = 'dr'")
    assert [(r["value"], r["samples"], round(r["uplift"], 6)) for r in learned] == [
        (0.66, 400, 0.32)
    ]  # latest


def grafana_sql(raw: str) -> str:
    """A panel's SQL with the data source plugin's macros expanded as the plugin does, over all time."""
    expanded = _TIME_FILTER.sub(r"\1 >= toDateTime(0) AND \1 <= toDateTime('2100-01-01 00:00:00')", raw)
    assert "$" not in expanded, f"unexpanded macro or variable in {raw}"
    return expanded


def test_grafana_board_is_valid_and_queries_existing_views(store: ClickHouseStore) -> None:
    board = json.loads(BOARD.read_text())
    assert {r["id"] for r in board["__requires"]} >= {PLUGIN}
    (variable,) = board["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", PLUGIN)
    views = set(view_names())
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 8
    used: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["type"] == PLUGIN, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": PLUGIN, "uid": "${datasource}"}
            assert target["editorType"] == "sql" and target["queryType"] in ("timeseries", "table")
            sources = set(re.findall(r"\bFROM\s+(\w+)", target["rawSql"]))
            assert sources and sources <= views, (panel["title"], sources - views)
            used |= sources
            assert store.query(grafana_sql(target["rawSql"])).rows, panel["title"]
    assert used == views  # every view is on the board
