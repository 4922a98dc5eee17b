"""Trace coverage against a real engine (decisions from the stream, spans through /v1/traces) and the
Tempo stand-in: which decisions count as traced, Tempo's zero-stripped ids, its limit, its failures."""

from __future__ import annotations

import httpx
import pytest
import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from cli.trace_coverage import TRACEQL, TempoError, search_tempo, trace_coverage
from symphony import engine_client
from symphony.events import Decision
from symphony.redis_server import free_port
from symphony.stream import publish
from tests.engineutil import BASE_TS, SHARDS, SPANS_TOKEN, Engine, pair
from tests.tempo_standin import TempoStandIn

WALL_S = 1_800_000_000


def decisions() -> list[Decision]:
    """Four decisions a second apart: three traced (the first id starting with zeros), the last not."""
    made = []
    for i, trace_id in enumerate(("00ab" + "1" * 28, "2" * 32, "3" * 32, "4" * 32)):
        decision, _ = pair(i * 1000)
        made.append(decision.model_copy(update={"trace_id": trace_id, "span_id": f"{i + 1:016x}"}))
    return made


def server_spans(traced: list[Decision], service: str = "symphony-proxy") -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", service
    spans = resource_spans.scope_spans.add().spans
    for decision in traced:
        span = spans.add()
        span.trace_id, span.span_id = bytes.fromhex(decision.trace_id), bytes.fromhex(decision.span_id)
        span.name, span.kind = "POST /v1/chat/completions", Span.SPAN_KIND_SERVER
        span.start_time_unix_nano = WALL_S * 10**9
        span.end_time_unix_nano = span.start_time_unix_nano + 5_000_000
    return bytes(request.SerializeToString())


def test_coverage_counts_the_decisions_whose_server_span_clickhouse_and_tempo_hold(engine: Engine) -> None:
    engine.start()
    made = decisions()
    client = redis.Redis.from_url(engine.redis_url)
    publish(client, made, SHARDS)
    client.close()
    body = server_spans(made[:3])
    posted = httpx.post(
        f"{engine.bare_url}/v1/traces",
        content=body,
        headers={"content-type": "application/x-protobuf", "authorization": f"Bearer {SPANS_TOKEN}"},
    )
    assert posted.status_code == 200
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", 4)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM otel_traces FINAL", 3)
    now = BASE_TS + 3_500  # the window's end: every decision but the first is within 3 s of it
    with TempoStandIn() as tempo:
        tempo.take(ExportTraceServiceRequest.FromString(body))
        full = trace_coverage(engine.url, now, 10_000, tempo_url=tempo.url, wall_s=WALL_S)
        recent = trace_coverage(engine.url, now, 3_000, tempo_url=tempo.url, wall_s=WALL_S)
        assert search_tempo(tempo.url, WALL_S - 10, WALL_S + 10, limit=2) == {
            made[0].trace_id,
            made[1].trace_id,
        }
        (first, *_) = tempo.searches
    clickhouse, in_tempo = full
    assert (clickhouse.source, clickhouse.decisions, clickhouse.traced, clickhouse.share) == (
        "clickhouse",
        4,
        3,
        0.75,
    )
    # Tempo printed the first trace id without its zeros; it counts all the same.
    assert (in_tempo.source, in_tempo.decisions, in_tempo.traced, in_tempo.truncated) == (
        "tempo",
        4,
        3,
        False,
    )
    assert [(r.decisions, r.traced) for r in recent] == [(3, 2), (3, 2)]  # the first decision is out
    assert first["q"] == TRACEQL and int(first["end"]) - int(first["start"]) == 10 + 120
    assert int(first["limit"]) == 20  # at least 20, twice the decisions


def test_a_span_of_another_service_or_another_span_of_the_trace_is_not_the_decisions(engine: Engine) -> None:
    engine.start()
    made = decisions()[:2]
    client = redis.Redis.from_url(engine.redis_url)
    publish(client, made, SHARDS)
    client.close()
    # The first: its trace, but a span other than the decision's; the second: another service's span.
    other_span = [made[0].model_copy(update={"span_id": "f" * 16})]
    for body in (server_spans(other_span), server_spans(made[1:], service="someone-else")):
        headers = {"content-type": "application/x-protobuf", "authorization": f"Bearer {SPANS_TOKEN}"}
        assert httpx.post(f"{engine.bare_url}/v1/traces", content=body, headers=headers).status_code == 200
    engine_client.wait_for_count(engine.url, "SELECT count() FROM otel_traces FINAL", 2)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", 2)
    (clickhouse,) = trace_coverage(engine.url, BASE_TS + 10_000, 60_000)
    assert (clickhouse.decisions, clickhouse.traced) == (2, 0)


def test_tempo_that_refuses_or_is_not_there_is_an_error_that_says_so() -> None:
    with TempoStandIn() as tempo, pytest.raises(TempoError, match="answered 404"):
        search_tempo(f"{tempo.url}/not-tempo", 0, 10, 20)
    with pytest.raises(TempoError, match="did not answer"):
        search_tempo(f"http://127.0.0.1:{free_port()}", 0, 10, 20)
