"""The engine's OTLP/HTTP traces endpoint on a real engine: who may post, what it refuses, where spans go."""

from __future__ import annotations

import gzip

import httpx
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from symphony import engine_client
from tests.engineutil import ADMIN_TOKEN, ANALYST_TOKEN, SPANS_TOKEN, Engine
from tests.sinks.test_otel_traces import make_spans

PROTOBUF = {"content-type": "application/x-protobuf"}


def post(engine: Engine, body: bytes, token: str | None, **headers: str) -> httpx.Response:
    auth = {} if token is None else {"authorization": f"Bearer {token}"}
    return httpx.post(f"{engine.bare_url}/v1/traces", content=body, headers={**PROTOBUF, **auth, **headers})


def status_message(answer: httpx.Response) -> str:
    assert answer.headers["content-type"] == "application/x-protobuf"
    message: str = status_pb2.Status.FromString(answer.content).message
    return message


def test_only_the_spans_token_and_admin_may_post_spans_and_the_spans_token_may_do_nothing_else(
    engine: Engine,
) -> None:
    engine.start()
    body = encode_spans(make_spans()).SerializeToString()
    for token, status in ((None, 401), ("wrong", 401), (ANALYST_TOKEN, 403), (SPANS_TOKEN, 200)):
        answer = post(engine, body, token)
        assert answer.status_code == status, (token, answer.text)
        assert SPANS_TOKEN not in answer.text and ANALYST_TOKEN not in answer.text
    refused = post(engine, body, ANALYST_TOKEN)
    assert "the analyst role may only read" in refused.json()["error"]
    accepted = post(engine, body, SPANS_TOKEN)
    ExportTraceServiceResponse.FromString(accepted.content)  # OTLP's answer, in protobuf
    assert post(engine, gzip.compress(body), ADMIN_TOKEN, **{"content-encoding": "gzip"}).status_code == 200
    # The spans token reads nothing.
    for method, path in (("POST", "/query"), ("GET", "/metrics"), ("GET", "/learner/metrics")):
        answer = httpx.request(
            method,
            f"{engine.bare_url}{path}",
            json={"sql": "SELECT 1"},
            headers={"authorization": f"Bearer {SPANS_TOKEN}"},
        )
        assert answer.status_code == 403 and "the spans role may only post spans" in answer.json()["error"]
    # Each of the 3 spans once, however many times it was posted (3 times).
    assert engine_client.wait_for_count(engine.url, "SELECT count() FROM otel_traces FINAL", 3) == 3
    kinds = engine_client.query(engine.url, "SELECT groupArraySorted(10)(SpanKind) FROM otel_traces FINAL")
    assert kinds.rows == [[["Client", "Internal", "Server"]]]
    metrics = engine.metrics()
    assert metrics['symphony_engine_spans_total{outcome="received"}'] == 3 * 3
    written = metrics['symphony_engine_spans_total{outcome="written"}']
    assert written + metrics["symphony_engine_spans_buffered"] == 3 * 3
    assert metrics['symphony_engine_spans_total{outcome="refused"}'] == 0


def test_a_malformed_payload_is_a_400_that_says_what_is_wrong_and_nothing_of_it_is_kept(
    engine: Engine,
) -> None:
    engine.start()
    not_protobuf = post(engine, b"\xff\xff\xff\xff garbage", SPANS_TOKEN)
    assert not_protobuf.status_code == 400
    assert "the body is not an OTLP ExportTraceServiceRequest in protobuf" in status_message(not_protobuf)
    request = encode_spans(make_spans())
    request.resource_spans[0].scope_spans[0].spans[2].trace_id = b"\x07" * 15
    bad_id = post(engine, request.SerializeToString(), SPANS_TOKEN)
    assert bad_id.status_code == 400
    assert status_message(bad_id) == (
        "resource_spans[0].scope_spans[0].spans[2].trace_id:"
        " a trace id is 16 bytes, not all zero; got 15 bytes"
    )
    not_gzip = post(engine, b"plain", SPANS_TOKEN, **{"content-encoding": "gzip"})
    assert not_gzip.status_code == 400 and "not gzip" in status_message(not_gzip)
    as_json = post(engine, b"{}", SPANS_TOKEN, **{"content-type": "application/json"})
    assert as_json.status_code == 415 and "application/x-protobuf" in status_message(as_json)
    too_large = post(engine, b"\0" * ((16 << 20) + 1), SPANS_TOKEN)
    assert too_large.status_code == 413 and "over 16777216 bytes" in status_message(too_large)
    # Chunked, with no length declared: cut off once past the limit.
    chunked = httpx.post(
        f"{engine.bare_url}/v1/traces",
        content=iter([b"\0" * (6 << 20)] * 3),
        headers={**PROTOBUF, "authorization": f"Bearer {SPANS_TOKEN}"},
    )
    assert chunked.status_code == 413 and "content-length" not in chunked.request.headers
    assert engine.count("SELECT count() FROM otel_traces") == 0
