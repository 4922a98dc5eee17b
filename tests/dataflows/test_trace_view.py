"""``GET /traces/{trace_id}`` on a real engine: the trace an alert links to, with its decision."""

from __future__ import annotations

import httpx
import redis

from symphony import engine_client
from symphony.settings import Settings
from symphony.stream import publish
from tests.cli.test_trace_coverage import decisions, server_spans
from tests.engineutil import ANALYST_TOKEN, SHARDS, SPANS_TOKEN, Engine


def test_a_traces_view_has_its_spans_and_its_decision_and_only_readers_see_it(engine: Engine) -> None:
    engine.start()
    decision, untraced = decisions()[1], decisions()[3]
    client = redis.Redis.from_url(engine.redis_url)
    publish(client, [decision, untraced], SHARDS)
    client.close()
    headers = {"content-type": "application/x-protobuf", "authorization": f"Bearer {SPANS_TOKEN}"}
    body = server_spans([decision])
    assert httpx.post(f"{engine.bare_url}/v1/traces", content=body, headers=headers).status_code == 200
    engine_client.wait_for_count(engine.url, "SELECT count() FROM otel_traces FINAL", 1)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", 2)

    # The link an alert carries by default, followed with the analyst's token.
    link = Settings(engine_port=engine.port).resolved_trace_url_template.format(trace_id=decision.trace_id)
    analyst = {"authorization": f"Bearer {ANALYST_TOKEN}"}
    view = httpx.get(link, headers=analyst)
    assert view.status_code == 200, view.text
    shown = view.json()
    assert shown["trace_id"] == decision.trace_id
    assert shown["decision"]["decision_id"] == decision.decision_id
    assert shown["decision"]["quota_remaining"] == decision.quota_remaining
    (span,) = shown["spans"]
    assert (span["span_id"], span["kind"], span["service"]) == (decision.span_id, "Server", "symphony-proxy")
    # A decision whose spans were lost still shows, without spans.
    lost = httpx.get(f"{engine.bare_url}/traces/{untraced.trace_id.upper()}", headers=analyst).json()
    assert lost["decision"]["decision_id"] == untraced.decision_id and lost["spans"] == []
    assert httpx.get(f"{engine.bare_url}/traces/{'9' * 32}", headers=analyst).status_code == 404
    bad = httpx.get(f"{engine.bare_url}/traces/x' OR 1=1 --", headers=analyst)
    assert bad.status_code == 400 and "32 hexadecimal digits" in bad.json()["error"]
    spans_only = {"authorization": f"Bearer {SPANS_TOKEN}"}
    assert httpx.get(link, headers=spans_only).status_code == 403
    assert httpx.get(link).status_code == 401
