"""Traces end to end: `symphony up` (tracing on by default), requests through the proxy with the
simulator behind it, spans in ClickHouse ``otel_traces`` joined to their decisions, and
`symphony trace-coverage` against ClickHouse and a Tempo stand-in that records its calls."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import redis

from cli.trace_coverage import TRACEQL
from symphony import engine_client
from symphony.clock import shared_clock
from symphony.events import Decision, new_id
from symphony.stream import publish
from tests.stackutil import stack_env, symphony_up
from tests.tempo_standin import TempoStandIn

REQUESTS = 30
GEN_AI_SERVER = (
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.provider.name",
    "gen_ai.response.model",
)
SYMPHONY = (
    "symphony.decision_id",
    "symphony.policy_version",
    "symphony.quota_remaining",
    "symphony.overrides",
)
GEN_AI_ATTEMPT = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
)

SPANS_SQL = """
SELECT TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, SpanAttributes
FROM otel_traces FINAL WHERE TraceId IN (SELECT trace_id FROM decisions FINAL)
"""


def rows(engine_url: str, sql: str) -> list[dict[str, Any]]:
    result = engine_client.query(engine_url, sql, timeout=30)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def wait_for(engine_url: str, sql: str, expected: int, timeout: float = 60.0) -> None:
    engine_client.wait_for_count(engine_url, sql, expected, timeout=timeout)


def untraced_decision(redis_url: str) -> Decision:
    """A decision whose spans were lost (as when both back ends were down), published as the proxy does."""
    client = redis.Redis.from_url(redis_url)
    try:
        ts = shared_clock(client).now_ms()
        decision = Decision(
            event_id=new_id(ts),
            ts=ts,
            decision_id=new_id(ts),
            request_id=new_id(ts),
            app="dev",
            task="chat",
            candidates=["openai/gpt-4o-mini"],
            probabilities=[1.0],
            provider="openai",
            model="gpt-4o-mini",
            policy="champion",
            policy_version="v1",
            propensity=1.0,
            trace_id="f" * 32,  # a trace no back end ever got
            span_id="e" * 16,
        )
        publish(client, [decision], 4)
    finally:
        client.close()
    return decision


def test_every_request_is_a_trace_in_clickhouse_and_tempo_joined_to_its_decision(tmp_path: Path) -> None:
    with TempoStandIn() as tempo:
        stack = stack_env(tmp_path, TEMPO_ENDPOINT=tempo.url, TEMPO_QUERY_URL=tempo.url)
        with symphony_up(stack):
            client = openai.OpenAI(base_url=f"{stack.proxy_url}/v1", api_key=stack.dev_key, max_retries=0)
            for index in range(REQUESTS):
                messages: list[openai.types.chat.ChatCompletionMessageParam] = [
                    {"role": "user", "content": f"trace request {index}"}
                ]
                if index % 2:
                    for _ in client.chat.completions.create(
                        model="auto", messages=messages, max_tokens=16, stream=True
                    ):
                        pass
                else:
                    client.chat.completions.create(model="auto", messages=messages, max_tokens=16)
            lost = untraced_decision(stack.redis_url)
            url = stack.engine_url
            wait_for(url, "SELECT count() FROM decisions FINAL", REQUESTS + 1)
            wait_for(url, "SELECT count() FROM otel_traces FINAL WHERE SpanKind = 'Server'", REQUESTS)
            wait_for(url, "SELECT count() FROM otel_traces FINAL WHERE SpanKind = 'Client'", REQUESTS)
            decisions = rows(
                url, "SELECT decision_id, trace_id, span_id, policy_version FROM decisions FINAL"
            )
            spans = rows(url, SPANS_SQL)
            server_spans = rows(
                url, "SELECT TraceId, SpanId FROM otel_traces FINAL WHERE SpanKind = 'Server' LIMIT 100000"
            )
            deadline = time.monotonic() + 30
            while len(tempo.traces) < REQUESTS and time.monotonic() < deadline:
                time.sleep(0.2)
            coverage = subprocess.run(
                [sys.executable, "-m", "cli", "trace-coverage", "--window", "1h", "--json"],
                env=stack.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            metrics = httpx.get(f"{stack.proxy_url}/metrics").text

    # Each decision's trace: its server span (the decision's span id), and under it the route,
    # the quota reservation and the provider attempt, each in ClickHouse with its attributes.
    assert len(decisions) == REQUESTS + 1
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(span["TraceId"], []).append(span)
    assert lost.trace_id not in by_trace
    for decision in decisions:
        if decision["decision_id"] == lost.decision_id:
            continue
        trace = by_trace[decision["trace_id"]]
        (server,) = [s for s in trace if s["SpanKind"] == "Server"]
        assert server["SpanId"] == decision["span_id"] and server["ParentSpanId"] == ""
        assert server["ServiceName"] == "symphony-proxy"
        attributes = server["SpanAttributes"]
        assert all(name in attributes for name in SYMPHONY + GEN_AI_SERVER), attributes
        assert attributes["symphony.decision_id"] == decision["decision_id"]
        assert attributes["symphony.policy_version"] == decision["policy_version"]
        assert json.loads(attributes["symphony.quota_remaining"])  # the snapshot, as JSON
        assert attributes["gen_ai.request.model"] == "auto"
        children = {s["SpanName"]: s for s in trace if s["ParentSpanId"] == server["SpanId"]}
        assert {"symphony.route", "symphony.quota.reserve"} <= set(children)
        attempts = [s for s in trace if s["SpanKind"] == "Client"]
        assert attempts and all(a["ParentSpanId"] == server["SpanId"] for a in attempts)
        served = attempts[-1]["SpanAttributes"]
        assert all(name in served for name in GEN_AI_ATTEMPT), served
        assert served["gen_ai.provider.name"] == attributes["gen_ai.provider.name"]
        assert int(served["gen_ai.usage.output_tokens"]) > 0
        assert children["symphony.route"]["SpanAttributes"]["symphony.decision_id"] == decision["decision_id"]

    # Coverage, from `symphony trace-coverage`, against counts made here another way: every request's
    # trace, and not the decision whose spans were lost.
    assert coverage.returncode == 0, coverage.stderr
    reports = {report["source"]: report for report in json.loads(coverage.stdout)}
    stored = {(s["TraceId"], s["SpanId"]) for s in server_spans}
    independent = sum((d["trace_id"], d["span_id"]) in stored for d in decisions)
    assert independent == REQUESTS
    clickhouse = reports["clickhouse"]
    assert (clickhouse["decisions"], clickhouse["traced"]) == (REQUESTS + 1, independent)
    assert clickhouse["coverage"] == round(independent / (REQUESTS + 1), 4) >= 0.95
    in_tempo = sum(d["trace_id"] in tempo.traces for d in decisions)
    assert in_tempo == REQUESTS
    assert (reports["tempo"]["decisions"], reports["tempo"]["traced"]) == (REQUESTS + 1, in_tempo)
    assert reports["tempo"]["coverage"] >= 0.95 and reports["tempo"]["truncated"] is False
    (search,) = tempo.searches
    assert search["q"] == TRACEQL == '{ resource.service.name = "symphony-proxy" }'
    assert int(search["end"]) - int(search["start"]) == 3600 + 2 * 60
    assert int(search["limit"]) >= REQUESTS
    # Both destinations exported and neither dropped a span.
    assert 'symphony_spans_dropped_total{destination="control_plane"} 0.0' in metrics
    assert 'symphony_spans_dropped_total{destination="tempo"} 0.0' in metrics
