"""SLO alerts end to end: a provider made slow in the simulator raises an alert in a real Alertmanager
whose annotations link to the trace of a request that breached, and it resolves when the provider recovers.

The stack: the real simulator and proxy (tracing on), a real engine (its SLO branch judging a 4 s
window every second), Debian's `prometheus-alertmanager` (its webhook receiver, Slack and PagerDuty
each a local stand-in that records the calls). Traffic is pinned to grok/grok-3-mini, which the
simulator makes slow (800 ms to the first token) and then fast again.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from symphony.redis_server import RedisServer, free_port
from tests.engineutil import SPANS_TOKEN, Engine
from tests.proxy_stack import ProxyStack
from tests.recording_server import Recorder, recording_server

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
ARM = "grok/grok-3-mini"
CONFIG = """
route:
  receiver: webhook
  group_by: [alertname, provider, model]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: {url}/alertmanager
        send_resolved: true
"""
TRACE_URL = "https://grafana.example/explore/trace/{trace_id}"


@pytest.fixture
def alertmanager(tmp_path: Path, recorder: tuple[str, Recorder]) -> Iterator[str]:
    assert Path(ALERTMANAGER).exists(), "install Alertmanager: apt-get install prometheus-alertmanager"
    config = tmp_path / "am.yml"
    config.write_text(CONFIG.format(url=recorder[0]))
    port = free_port()
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: no clash between parallel runs
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "alertmanager.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), 15, "Alertmanager ready")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def recorder() -> Iterator[tuple[str, Recorder]]:
    with recording_server() as (server, calls):
        yield server.url, calls


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout}s")


async def traffic(stack: ProxyStack, seconds: float, rate: float = 25.0) -> int:
    """Requests pinned to ARM at ``rate`` a second; the number answered."""
    async with httpx.AsyncClient(timeout=10) as client:

        async def one() -> bool:
            body = {"model": ARM, "messages": [{"role": "user", "content": "slo"}], "max_tokens": 8}
            answer = await client.post(f"{stack.base_url}/chat/completions", json=body, headers=stack.auth)
            return answer.status_code == 200

        tasks = []
        for _ in range(round(seconds * rate)):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / rate)
        return sum(await asyncio.gather(*tasks))


def webhook_alerts(calls: Recorder, status: str) -> list[dict[str, Any]]:
    return [a for body in calls.on("/alertmanager") for a in body["alerts"] if a["status"] == status]


def test_a_slow_provider_raises_an_alert_with_a_trace_link_and_it_resolves_when_it_recovers(
    tmp_path: Path,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    alertmanager: str,
    recorder: tuple[str, Recorder],
) -> None:
    stand_ins, calls = recorder
    for name, value in {
        "SLO_P95_MS": "400",
        "SLO_WINDOW_S": "4",
        "SLO_STEP_S": "1",
        "SLO_MIN_ATTEMPTS": "10",
        "ALERTMANAGER_URL": alertmanager,
        "SLACK_WEBHOOK_URL": f"{stand_ins}/slack",
        "PAGERDUTY_ROUTING_KEY": "R0UTINGKEY0000000000000000000000",
        "PAGERDUTY_EVENTS_URL": f"{stand_ins}/pagerduty",
        "TRACE_URL_TEMPLATE": TRACE_URL,
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "engine").mkdir()
    engine = Engine(redis_server.url, tmp_path / "engine").start()
    try:
        # Spans to the engine (otel_traces), as `symphony up` sends them.
        with ProxyStack(redis_server, spans_token=SecretStr(SPANS_TOKEN), engine_port=engine.port) as stack:
            httpx.put(f"{stack.sim.url}/admin/faults/grok", json={"slow_ttft_ms": 800}).raise_for_status()
            assert asyncio.run(traffic(stack, 8)) >= 190
            [fired] = wait_for(lambda: webhook_alerts(calls, "firing"), 20, "firing alert at the webhook")
            httpx.delete(f"{stack.sim.url}/admin/faults").raise_for_status()
            assert asyncio.run(traffic(stack, 8)) >= 190
            [resolved] = wait_for(lambda: webhook_alerts(calls, "resolved"), 20, "resolution at the webhook")
        kept = wait_for(lambda: len(rows := _alert_rows(engine)) >= 2 and rows, 20, "both alert rows")
        exemplar = _exemplar(engine, fired["annotations"]["trace_id"], fired["annotations"]["decision_id"])
        spans = wait_for(lambda: _spans(engine, fired["annotations"]["trace_id"]), 20, "the exemplar's spans")
        first_exemplar = _exemplar(engine, kept[0][2], kept[0][3])
    finally:
        engine.stop()

    labels, annotations = fired["labels"], fired["annotations"]
    assert labels["alertname"] == "SymphonyLatencyP95"
    assert (labels["provider"], labels["model"]) == ("grok", "grok-3-mini")
    assert float(annotations["value"]) > 400 and annotations["threshold"] == "400"
    trace_id, trace_url = annotations["trace_id"], annotations["trace_url"]
    assert trace_url == TRACE_URL.format(trace_id=trace_id) and fired["generatorURL"] == trace_url
    # The exemplar is a real request: its decision, pinned to the slow arm, carries that trace.
    [[provider, latency]] = exemplar
    assert provider == "grok" and latency > 400
    # That trace is in ClickHouse: its server span with the four symphony.* attributes, its attempt with
    # the GenAI conventions' attributes.
    kinds = {kind: attributes for kind, attributes in spans}
    assert {
        "symphony.decision_id",
        "symphony.policy_version",
        "symphony.quota_remaining",
        "symphony.overrides",
    } <= (kinds["Server"].keys())
    assert kinds["Server"]["symphony.decision_id"] == annotations["decision_id"]
    assert kinds["Client"]["gen_ai.provider.name"] == "grok"
    assert {"gen_ai.operation.name", "gen_ai.request.model", "gen_ai.response.model"} <= kinds[
        "Client"
    ].keys()
    assert {"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"} <= kinds["Client"].keys()
    assert resolved["labels"] == labels and resolved["endsAt"] >= resolved["startsAt"]

    # ClickHouse keeps both transitions of the one alert; its firing row names the exemplar the alert opened
    # with, which the webhook's may not be: Alertmanager notifies with the latest refresh's annotations.
    assert [row[1] for row in kept] == ["firing", "resolved"] and len({row[0] for row in kept}) == 1
    [[provider, latency]] = first_exemplar
    assert provider == "grok" and latency > 400

    # Slack and PagerDuty got the transitions only, in their services' shapes, so their link is to the
    # exemplar the alert opened with (ClickHouse's firing row), not the webhook's latest refresh.
    opening_trace_url = TRACE_URL.format(trace_id=kept[0][2])
    slack = calls.on("/slack")
    assert len(slack) == 2 and "FIRING SymphonyLatencyP95" in slack[0]["text"]
    assert f"<{opening_trace_url}|" in slack[0]["blocks"][0]["text"]["text"]
    assert "RESOLVED" in slack[1]["text"]
    trigger, resolve = calls.on("/pagerduty")
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UTINGKEY0000000000000000000000"
    assert trigger["dedup_key"] == resolve["dedup_key"] == kept[0][0]
    assert {"summary", "source", "severity"} <= trigger["payload"].keys()
    assert trigger["payload"]["severity"] in ("critical", "error", "warning", "info")
    assert trigger["links"] == [{"href": opening_trace_url, "text": "Trace of a request that breached"}]


def _alert_rows(engine: Engine) -> list[list[Any]]:
    return engine_rows(engine, "SELECT alert_id, status, trace_id, decision_id FROM alerts FINAL ORDER BY at")


def _spans(engine: Engine, trace_id: str) -> list[list[Any]]:
    """(SpanKind, SpanAttributes) of the trace's server and client spans in otel_traces."""
    return engine_rows(
        engine,
        "SELECT SpanKind, SpanAttributes FROM otel_traces FINAL "
        f"WHERE TraceId = '{trace_id}' AND SpanKind IN ('Server', 'Client') ORDER BY Timestamp",
    )


def _exemplar(engine: Engine, trace_id: str, decision_id: str) -> list[list[Any]]:
    """The provider and latency of the request an alert names, found by its trace and its decision."""
    return engine_rows(
        engine,
        "SELECT d.provider, u.latency_ms FROM decisions AS d FINAL INNER JOIN usage AS u FINAL "
        f"ON u.decision_id = d.decision_id "
        f"WHERE d.trace_id = '{trace_id}' AND d.decision_id = '{decision_id}'",
    )


def engine_rows(engine: Engine, sql: str) -> list[list[Any]]:
    from symphony import engine_client

    return engine_client.query(engine.url, sql).rows
