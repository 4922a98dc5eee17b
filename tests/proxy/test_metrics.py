"""The proxy's /metrics: OpenMetrics with trace-id exemplars when asked, read by a real OpenMetrics parser."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from symphony.redis_server import RedisServer
from tests.proxy.test_tracing import CHAT, CLIENT_TRACE, CLIENT_TRACEPARENT, Receiver
from tests.proxy_stack import ProxyStack

OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"
HISTOGRAMS = ("symphony_request_duration_seconds", "symphony_provider_attempt_duration_seconds")


def exemplars(text: str) -> dict[str, list[Any]]:
    """Per histogram, the exemplars on its buckets."""
    found: dict[str, list[Any]] = {}
    for family in parse_openmetrics(text):
        for sample in family.samples:
            if sample.exemplar is not None:
                found.setdefault(family.name, []).append(sample)
    return found


def test_latency_histograms_carry_the_requests_trace_id_as_an_exemplar_in_openmetrics(
    redis_server: RedisServer,
) -> None:
    with Receiver() as receiver, ProxyStack(redis_server, tempo_endpoint=receiver.url) as stack:
        answer = httpx.post(
            f"{stack.base_url}/chat/completions",
            json=CHAT,
            headers={**stack.auth, "traceparent": CLIENT_TRACEPARENT},
        )
        assert answer.status_code == 200, answer.text
        scraped = httpx.get(f"{stack.url}/metrics", headers={"accept": OPENMETRICS})
        plain = httpx.get(f"{stack.url}/metrics")
        odd = httpx.get(
            f"{stack.url}/metrics", headers={"accept": "application/openmetrics-text; version=abc"}
        )
        (decision,) = stack.events().decisions

    assert scraped.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert scraped.text.rstrip().endswith("# EOF")
    found = exemplars(scraped.text)
    assert decision.trace_id == CLIENT_TRACE  # the request's trace: the client's
    for name in HISTOGRAMS:
        (bucket,) = found[name]  # one request: one exemplar, on the bucket its latency fell in
        assert bucket.exemplar.labels == {"trace_id": decision.trace_id}
        assert bucket.exemplar.value <= float(bucket.labels["le"])
    (request_bucket,) = found["symphony_request_duration_seconds"]
    assert request_bucket.labels["route"] == "/v1/chat/completions" and request_bucket.labels["code"] == "200"
    (attempt_bucket,) = found["symphony_provider_attempt_duration_seconds"]
    assert attempt_bucket.labels["provider"] == "openai" and attempt_bucket.labels["status"] == "ok"
    # Without the Accept header: Prometheus text, which has no exemplars, and the same counts.
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    counts = {
        s.name: s.value for f in parse_prometheus(plain.text) for s in f.samples if s.name.endswith("_count")
    }
    assert counts["symphony_request_duration_seconds_count"] == 1
    assert counts["symphony_provider_attempt_duration_seconds_count"] == 1
    assert "trace_id" not in plain.text
    assert odd.status_code == 200 and odd.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_with_tracing_off_the_histograms_count_without_exemplars(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server) as stack:
        for _ in range(3):
            assert (
                httpx.post(f"{stack.base_url}/chat/completions", json=CHAT, headers=stack.auth).status_code
                == 200
            )
        scraped = httpx.get(f"{stack.url}/metrics", headers={"accept": OPENMETRICS}).text
    assert exemplars(scraped) == {}
    counts = {s.name: s.value for f in parse_openmetrics(scraped) for s in f.samples}
    assert counts["symphony_request_duration_seconds_count"] == 3
