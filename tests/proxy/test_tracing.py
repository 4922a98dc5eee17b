"""Tracing end to end: the real proxy in front of the real simulator, exporting OTLP/HTTP to a
real HTTP receiver in the test, which decodes each payload as ``ExportTraceServiceRequest``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from proxy.tracing import Tracing, traces_url
from symphony.redis_server import RedisServer, free_port
from symphony.settings import SettingsError, load_settings
from tests.proxy_stack import ProxyStack

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Trace me."}]}


@dataclass(frozen=True)
class Exported:
    """One span as the receiver decoded it, with its resource's attributes."""

    span: Span
    resource: dict[str, Any]

    @property
    def attributes(self) -> dict[str, Any]:
        return _attributes(self.span.attributes)

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


class Receiver:
    """An OTLP/HTTP traces endpoint on a real socket: decodes every export, answers 200."""

    def __init__(self) -> None:
        self.spans: list[Exported] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.take(self.path, self.headers["content-type"], body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def take(self, path: str, content_type: str, body: bytes) -> None:
        assert content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(body)
        with self._lock:
            self.paths.append(path)
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    self.spans += [Exported(span, resource) for span in scope_spans.spans]

    def wait_for(self, done: Callable[[list[Exported]], bool], timeout: float = 15.0) -> list[Exported]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                spans = list(self.spans)
            if done(spans):
                return spans
            time.sleep(0.1)
        raise AssertionError(f"the receiver did not get the spans in {timeout} s: {len(spans)} so far")

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def _trace_of(spans: list[Exported], decision_id: str) -> dict[str, list[Exported]]:
    """The spans of the request that made ``decision_id``, by name."""
    (server,) = [
        s
        for s in spans
        if s.span.kind == Span.SPAN_KIND_SERVER and s.attributes.get("symphony.decision_id") == decision_id
    ]
    trace = [s for s in spans if s.trace_id == server.trace_id]
    by_name: dict[str, list[Exported]] = {}
    for span in trace:
        by_name.setdefault(span.span.name, []).append(span)
    return by_name


def _complete(decision_ids: list[str], children: int) -> Callable[[list[Exported]], bool]:
    """Every decision's server span is in, with at least ``children`` spans beside it."""

    def done(spans: list[Exported]) -> bool:
        servers = {
            s.attributes.get("symphony.decision_id"): s for s in spans if s.span.kind == Span.SPAN_KIND_SERVER
        }
        if not all(d in servers for d in decision_ids):
            return False
        return all(
            sum(s.trace_id == servers[d].trace_id for s in spans) >= 1 + children for d in decision_ids
        )

    return done


def test_a_request_is_one_trace_under_the_clients_and_the_provider_gets_its_attempts_span(
    redis_server: RedisServer, receiver: Receiver
) -> None:
    with ProxyStack(redis_server, tempo_endpoint=receiver.url, traffic_split=0.0) as stack:
        answer = httpx.post(
            f"{stack.base_url}/chat/completions",
            json=CHAT,
            headers={**stack.auth, "traceparent": CLIENT_TRACEPARENT},
        )
        assert answer.status_code == 200, answer.text
        decision_id = answer.headers["x-symphony-decision-id"]
        spans = receiver.wait_for(_complete([decision_id], children=3))
        traceparents = list(stack.sim_app.traceparents)
        events = stack.events()

    trace = _trace_of(spans, decision_id)
    (server,) = trace["POST /v1/chat/completions"]
    (route,) = trace["symphony.route"]
    (quota,) = trace["symphony.quota.reserve"]
    (attempt,) = trace["chat gpt-4o-mini"]
    # The client's trace is the request's: its span is the server span's parent.
    assert server.trace_id == CLIENT_TRACE and server.parent_id == CLIENT_SPAN
    assert server.resource["service.name"] == "symphony-proxy"
    assert {route.parent_id, quota.parent_id, attempt.parent_id} == {server.span_id}
    assert route.span.kind == quota.span.kind == Span.SPAN_KIND_INTERNAL
    assert attempt.span.kind == Span.SPAN_KIND_CLIENT
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}

    (decision,) = events.decisions
    attributes = server.attributes
    assert attributes["http.response.status_code"] == 200
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "openai/gpt-4o-mini"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attributes["symphony.policy_version"] == decision.policy_version
    assert json.loads(attributes["symphony.overrides"]) == decision.overrides
    assert json.loads(attributes["symphony.quota_remaining"]) == decision.quota_remaining
    assert route.attributes["symphony.decision_id"] == decision_id
    assert route.attributes["symphony.chosen"] == "openai/gpt-4o-mini"
    assert quota.attributes["symphony.quota.outcome"] == "granted"

    # The decision event names the server span, in OpenTelemetry's hex.
    assert (decision.trace_id, decision.span_id) == (server.trace_id, server.span_id)
    # The quota snapshot: what the reservation saw, per limit (the provider's and the app's).
    assert decision.quota_remaining and all(
        name.startswith(("openai", "app:")) for name in decision.quota_remaining
    )
    assert min(decision.quota_remaining.values()) >= 0

    (usage,) = events.usages
    assert attempt.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "symphony.attempt": 1,
        "symphony.attempt.status": "ok",
    }
    # The provider got the attempt's span as its parent, in the client's trace.
    assert traceparents == [f"00-{CLIENT_TRACE}-{attempt.span_id}-01"]


def test_a_streamed_attempts_span_ends_with_the_stream_and_a_failure_has_its_error_type(
    redis_server: RedisServer, receiver: Receiver
) -> None:
    with ProxyStack(redis_server, tempo_endpoint=receiver.url, traffic_split=0.0) as stack:
        with httpx.stream(
            "POST", f"{stack.base_url}/chat/completions", json={**CHAT, "stream": True}, headers=stack.auth
        ) as streamed:
            assert streamed.status_code == 200
            body = streamed.read()
            streamed_id = streamed.headers["x-symphony-decision-id"]
        assert b"[DONE]" in body
        stack.faults("perplexity", rate_429=1.0)
        refused = httpx.post(
            f"{stack.base_url}/chat/completions", json={**CHAT, "model": "sonar"}, headers=stack.auth
        )
        assert refused.status_code == 429
        failed_id = refused.headers["x-symphony-decision-id"]
        spans = receiver.wait_for(_complete([streamed_id, failed_id], children=3))
        events = stack.events()

    streamed_trace = _trace_of(spans, streamed_id)
    (server,) = streamed_trace["POST /v1/chat/completions"]
    (attempt,) = streamed_trace["chat gpt-4o-mini"]
    usage = next(u for u in events.usages if u.decision_id == streamed_id)
    # Output tokens are known only once the stream is over, and the span carries them.
    assert usage.output_tokens > 0
    assert attempt.attributes["gen_ai.usage.output_tokens"] == usage.output_tokens
    ttfc = attempt.attributes["gen_ai.response.time_to_first_chunk"]
    assert ttfc == pytest.approx(usage.ttfb_ms / 1000)
    assert attempt.span.end_time_unix_nano - attempt.span.start_time_unix_nano >= usage.latency_ms * 0.9e6
    assert attempt.span.end_time_unix_nano <= server.span.end_time_unix_nano
    assert "traceparent" not in body.decode()

    failed_trace = _trace_of(spans, failed_id)
    (failed_server,) = failed_trace["POST /v1/chat/completions"]
    (failed_attempt,) = failed_trace["chat sonar"]
    assert failed_attempt.attributes["error.type"] == "429"
    assert failed_attempt.span.status.code == failed_attempt.span.status.STATUS_CODE_ERROR
    assert failed_server.attributes["http.response.status_code"] == 429
    assert "error.type" not in failed_server.attributes  # the provider's refusal is no server error


def _metric(stack: ProxyStack, name: str) -> float:
    """A sample's value summed over its labels (spans: every destination), from the Prometheus text."""
    text = httpx.get(f"{stack.url}/metrics").text
    families = text_string_to_metric_families(text)
    return sum(s.value for family in families for s in family.samples if s.name == name)


def test_with_the_receiver_down_requests_succeed_and_the_dropped_spans_are_counted(
    redis_server: RedisServer,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with ProxyStack(redis_server, tempo_endpoint=down) as stack:
        assert _metric(stack, "symphony_spans_dropped_total") == 0
        for _ in range(5):
            answer = httpx.post(f"{stack.base_url}/chat/completions", json=CHAT, headers=stack.auth)
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 15
        while _metric(stack, "symphony_spans_dropped_total") < 5 * 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _metric(stack, "symphony_spans_dropped_total") >= 5 * 4  # server, route, quota, attempt
        assert _metric(stack, "symphony_spans_exported_total") == 0
        decisions = stack.events().decisions
    assert len(decisions) == 5 and all(len(d.trace_id) == 32 and len(d.span_id) == 16 for d in decisions)


def test_with_tracing_off_decisions_carry_no_trace_and_the_provider_no_traceparent(
    redis_server: RedisServer,
) -> None:
    with ProxyStack(redis_server) as stack:
        answer = httpx.post(
            f"{stack.base_url}/chat/completions",
            json=CHAT,
            headers={**stack.auth, "traceparent": CLIENT_TRACEPARENT},
        )
        assert answer.status_code == 200
        assert _metric(stack, "symphony_spans_dropped_total") == 0
        traceparents = list(stack.sim_app.traceparents)
        (decision,) = stack.events().decisions
    assert (decision.trace_id, decision.span_id) == ("", "")
    assert decision.quota_remaining  # the quota snapshot does not depend on tracing
    assert traceparents == [""]


def test_the_endpoint_setting_takes_an_http_url_or_nothing() -> None:
    assert load_settings(tempo_endpoint="").tempo_endpoint == ""
    assert load_settings(tempo_endpoint="https://tempo:4318").tempo_endpoint == "https://tempo:4318"
    for bad in ("tempo:4318", "ftp://tempo", "http://"):
        with pytest.raises(SettingsError, match="TEMPO_ENDPOINT"):
            load_settings(tempo_endpoint=bad)
    assert traces_url("http://tempo:4318") == "http://tempo:4318/v1/traces"
    assert traces_url("http://tempo:4318/") == "http://tempo:4318/v1/traces"
    assert traces_url("http://collector/otlp/v1/traces") == "http://collector/otlp/v1/traces"


def test_otel_bsp_schedule_delay_is_how_long_a_span_waits_for_its_export(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_BSP_SCHEDULE_DELAY")  # the test session's 1000
    assert load_settings().otel_bsp_schedule_delay == 5000  # the OpenTelemetry SDK's default
    for bad in ("0", "-5", "60001", "soon"):
        with pytest.raises(SettingsError, match="OTEL_BSP_SCHEDULE_DELAY"):
            load_settings(otel_bsp_schedule_delay=bad)
    prompt = Tracing.from_settings(load_settings(tempo_endpoint=receiver.url, otel_bsp_schedule_delay=200))
    patient = Tracing.from_settings(load_settings(tempo_endpoint=receiver.url, otel_bsp_schedule_delay=60000))
    assert prompt is not None and patient is not None
    patient.tracer.start_span("patient").end()
    prompt.tracer.start_span("prompt").end()
    receiver.wait_for(lambda spans: [one.span.name for one in spans] == ["prompt"], timeout=3)
    time.sleep(1.0)  # the patient one waits its minute: still not sent
    assert [one.span.name for one in receiver.spans] == ["prompt"]
    patient.close()  # and goes at close
    prompt.close()
    assert sorted(one.span.name for one in receiver.spans) == ["patient", "prompt"]


class StuckSender:
    """A back end that hangs until released, then refuses: what a dead Tempo looks like from here."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, payload: bytes) -> bool:
        self.entered.set()
        self.release.wait(10)
        return False

    def shutdown(self) -> None:
        self.release.set()


def test_spans_a_full_queue_drops_are_counted_and_so_are_those_left_at_close() -> None:
    sender = StuckSender()
    tracing = Tracing({"stuck": sender}, max_queue=8)  # and batches of 8: a full queue wakes the exporter
    for index in range(8):
        tracing.tracer.start_span(f"span {index}").end()
    assert sender.entered.wait(5)  # it took those 8 and hangs
    for index in range(32):
        tracing.tracer.start_span(f"span {index}").end()
    assert tracing.dropped == 32 - 8  # the queue holds 8 again; the others were let go
    sender.release.set()
    tracing.close()
    assert tracing.exported == 0 and tracing.dropped == 40


def test_two_destinations_down_close_within_one_bound_and_each_counts_its_own_drops() -> None:
    stuck = {"control_plane": StuckSender(), "tempo": StuckSender()}
    tracing = Tracing(dict(stuck), max_queue=8)
    for index in range(8):
        tracing.tracer.start_span(f"span {index}").end()
    assert all(sender.entered.wait(5) for sender in stuck.values())  # both hang on their batch
    started = time.monotonic()
    tracing.close()
    elapsed = time.monotonic() - started
    assert elapsed < 4.0 + 2.0, elapsed  # one shutdown bound (4 s) for both, not one after the other
    # The batch each one was exporting is counted when its export gives up: just after close.
    deadline = time.monotonic() + 5
    while tracing.counts() != {"control_plane": (0, 8), "tempo": (0, 8)} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tracing.counts() == {"control_plane": (0, 8), "tempo": (0, 8)}
