"""Evidence end to end below the stack: real chDB, real Redis, the simulator's status page, and the
GitHub and Jira stand-ins. One incident captured twice: one ticket each, then a comment each."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from cli.github_standin import GitHubStandIn
from simulator.app import create_app
from simulator.background import BackgroundServer
from simulator.faults import FaultSpec
from sinks.clickhouse import to_arrow
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore
from sinks.evidence.capture import CaptureError
from sinks.evidence.service import EvidenceRequest, build_service
from sinks.evidence.verify import verify_bundle
from symphony import keys
from symphony.catalog import load_catalog
from symphony.clock import RealClock
from symphony.events import Decision, Usage, new_id
from symphony.redis_server import RedisServer
from symphony.settings import load_settings
from tests import github_standin, jira_standin

TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DECISION_ID = "01KEVIDENCESERVICE00000001"
SECRET_IN_HEADERS = "pplx-" + "Q" * 48


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore.connect(f"chdb://{tmp_path / 'chdb'}")
    migrate(store)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def simulator() -> Iterator[BackgroundServer]:
    app = create_app(RealClock(), load_catalog(), seed=1)
    server = BackgroundServer(app).start()
    try:
        yield server
    finally:
        server.stop()


def facts(store: ClickHouseStore) -> None:
    decision = Decision(
        event_id=new_id(TS),
        ts=TS,
        decision_id=DECISION_ID,
        request_id="r1",
        app="billing",
        task="chat",
        candidates=["grok/grok-3-mini", "openai/gpt-4o-mini"],
        probabilities=[0.6, 0.4],
        provider="grok",
        model="grok-3-mini",
        policy="champion",
        policy_version="v7",
        propensity=0.6,
        quota_remaining={"grok:rpm": 3.0},
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
        fallbacks=["grok/grok-3-mini"],
        fallback_statuses=["timeout"],
        served_by="openai/gpt-4o-mini",
    )
    attempts = [
        Usage(
            event_id=new_id(TS + 1),
            ts=TS + 6000,
            decision_id=DECISION_ID,
            app="billing",
            provider="grok",
            model="grok-3-mini",
            attempt=1,
            status="timeout",
            ttfb_ms=0.0,
            latency_ms=6000.0,
            input_tokens=0,
            output_tokens=0,
            cost_usd=0.0,
            rate_limit={"x-ratelimit-remaining-requests": "3", "x-debug": SECRET_IN_HEADERS},
        ),
        Usage(
            event_id=new_id(TS + 2),
            ts=TS + 7000,
            decision_id=DECISION_ID,
            app="billing",
            provider="openai",
            model="gpt-4o-mini",
            attempt=2,
            status="ok",
            ttfb_ms=200.0,
            latency_ms=800.0,
            input_tokens=12,
            output_tokens=3,
            cost_usd=0.0000036,
            rate_limit={},
            fallback_from="grok/grok-3-mini",
        ),
    ]
    for table, records in (("decisions", [decision]), ("usage", attempts)):
        data, problems = to_arrow(table, records)
        assert not problems
        store.insert_arrow(table, data)


def test_one_incident_one_ticket_each_then_a_comment_each(
    store: ClickHouseStore,
    simulator: BackgroundServer,
    redis_server: RedisServer,
    github: GitHubStandIn,
    tmp_path: Path,
) -> None:
    facts(store)
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.hset(keys.eta_key("grok", "requests", "minute"), mapping={"remaining": "3", "eta_ms": "41000"})
    simulator_faults = f"{simulator.url}/admin/faults/grok"
    import httpx

    httpx.put(simulator_faults, json=FaultSpec(slow_ttft_ms=6000).model_dump()).raise_for_status()
    with jira_standin.serve_jira() as jira:
        settings = load_settings(
            redis_url=redis_server.url,
            var_dir=tmp_path / "var",
            sim_url=simulator.url,
            simulated_providers="all",
            evidence_github_repository="acme/symphony",
            evidence_github_token=SecretStr(github_standin.TOKEN),
            evidence_github_api_url=github.url,
            jira_url=jira.url,
            jira_email=jira_standin.EMAIL,
            jira_api_token=SecretStr(jira_standin.TOKEN),
            jira_project=jira_standin.PROJECT,
        )

        def read(sql: str) -> tuple[list[str], list[list[object]]]:
            rows = store.query_read_only(sql)
            return rows.columns, rows.rows

        service = build_service(settings, read, store)
        first = service.capture(
            DECISION_ID, fingerprint="abc123", incident_id="SymphonyLatencyP95:grok", trigger="slo_alert"
        )
        second = service.capture(
            DECISION_ID, fingerprint="abc123", incident_id="SymphonyLatencyP95:grok", trigger="slo_alert"
        )

        # exactly one issue each, then a comment each, in the shapes the services document
        assert len(github.called("POST", "/repos/acme/symphony/issues")) == 1
        assert len(github.called("POST", "/repos/acme/symphony/issues/1/comments")) == 1
        assert len(github.called("POST", "/repos/acme/symphony/releases")) == 1  # made once, then found
        [issue] = github.issues.values()
        assert issue["title"].startswith("[Symphony]")
        assert f"{github.web_url}/releases/download/evidence/" in issue["body"]
        assert len(jira.called("POST", "/rest/api/3/issue")) == 1
        assert len(jira.comments["OPS-1"]) == 1
        attach = jira.called("POST", "/rest/api/3/issue/OPS-1/attachments")
        assert len(attach) == 2 and all(c.headers["x-atlassian-token"] == "no-check" for c in attach)
        assert jira.issues["OPS-1"]["description"]["type"] == "doc"
        # every call carried the token (the stand-in answers 401 to any other, and records it masked)
        assert all(call.headers["Authorization"] == "Bearer ***" for call in github.calls)
        uploads = [call for call in github.calls if call.path.startswith("/uploads/")]
        assert [call.headers["Content-Type"] for call in uploads] == ["application/zip"] * 2

    assert first.opened == [f"{github.web_url}/issues/1", f"{jira.url}/browse/OPS-1"]
    assert second.commented == first.opened and not second.opened and not second.errors
    # the same incident data: the same bytes, uploaded once, attached as they are
    bundle = Path(first.bundle)
    assert first.sha256 == second.sha256 and bundle.parent == tmp_path / "var" / "evidence"
    [(name, uploaded)] = github.uploaded.items()
    assert name == bundle.name and uploaded == bundle.read_bytes()
    assert jira.attachments["OPS-1"][0] == (bundle.name, bundle.read_bytes())
    assert verify_bundle(bundle) == []

    with zipfile.ZipFile(bundle) as archive:
        decision = json.loads(archive.read("evidence/decision.json"))
        status_text = archive.read("evidence/status-grok.txt").decode()
        everything = b"".join(archive.read(n) for n in archive.namelist())
    assert decision["decision"]["candidates"] == ["grok/grok-3-mini", "openai/gpt-4o-mini"]
    assert [a["status"] for a in decision["attempts"]] == ["timeout", "ok"]
    assert decision["attempts"][0]["rate_limit"]["x-ratelimit-remaining-requests"] == "3"
    assert decision["quota_live"] == {
        "symphony:eta:{grok}:requests:minute": {"eta_ms": "41000", "remaining": "3"}
    }
    assert "Degraded performance" in status_text and "6000 ms" in status_text
    assert SECRET_IN_HEADERS.encode() not in everything and github_standin.TOKEN.encode() not in everything

    rows = store.query(
        "SELECT incident_id, decision_id, trigger, sha256, ticket_links FROM evidence_bundles FINAL"
    ).rows
    assert [row[:4] for row in rows] == [["SymphonyLatencyP95:grok", DECISION_ID, "slo_alert", first.sha256]]
    assert rows[0][4] == first.opened  # the latest record: the comment's links are the same tickets


def test_unknown_decision_and_bad_requests(
    store: ClickHouseStore, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = load_settings(redis_url=redis_server.url, var_dir=tmp_path / "var")

    def read(sql: str) -> tuple[list[str], list[list[object]]]:
        rows = store.query_read_only(sql)
        return rows.columns, rows.rows

    service = build_service(settings, read, store)
    with pytest.raises(CaptureError, match="no decision nope"):
        service.capture("nope")
    with pytest.raises(CaptureError, match="is not one"):
        service.capture("x' OR 1=1 --")
    for body, message in [
        (None, "expected a JSON body"),
        ({"decision_id": "d1", "extra": 1}, "unknown field"),
        ({"decision_id": "d1", "trigger": "cron"}, "trigger must be one of"),
        ({"decision_id": "d 1"}, "is not one"),
        ({"decision_id": "d1", "fingerprint": "a b"}, "fingerprint must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            EvidenceRequest.from_json(body)
