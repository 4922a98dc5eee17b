"""What a request may ask and how long it may take: n > 1 refused in each SDK's shape, the native
latency_budget_ms bounding the whole request, ANSWER_LIMIT_MS making a stalled non-streamed
answer fall back (the simulator's hang fault stands in for the stalling provider), and a client that
hangs up before its body is whole."""

from __future__ import annotations

import logging
import socket
import time

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack

MESSAGES = [{"role": "user", "content": "hello"}]


def test_n_above_one_is_refused_in_each_sdks_shape(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server) as stack:
        with pytest.raises(openai.BadRequestError) as refused:
            stack.openai().chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, n=2)
        assert (refused.value.param, refused.value.code) == ("n", "unsupported_parameter")
        assert "one choice per request (n=2); send 2 requests" in refused.value.message
        native = httpx.post(
            f"{stack.base_url}/route/execute", headers=stack.auth, json={"messages": MESSAGES, "n": 3}
        )
        assert native.status_code == 400 and native.json()["error"]["param"] == "n"
        with pytest.raises(anthropic.BadRequestError) as refused_too:
            stack.anthropic().messages.create(
                model="auto", max_tokens=8, messages=MESSAGES, extra_body={"n": 2}
            )
        assert refused_too.value.body["type"] == "error"  # type: ignore[index]  # Anthropic's shape
        assert "n:" in refused_too.value.message
        assert stack.sim_app.total() == 0  # refused before any provider


def test_latency_budget_bounds_the_whole_request(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server) as stack:
        stack.faults("openai", slow_ttft_ms=3000)  # every openai answer starts 3 s late
        started = time.monotonic()
        answer = httpx.post(
            f"{stack.base_url}/route/execute",
            headers=stack.auth,
            json={
                "messages": MESSAGES,
                "max_tokens": 8,
                "constraints": {"allowed_providers": ["openai"], "latency_budget_ms": 400},
            },
            timeout=30,
        )
        elapsed = time.monotonic() - started
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["code"] == "deadline_exceeded"
    assert elapsed < 1.5  # not the 2.5 s first-token limit, nor 3 s of the provider


def test_a_stalled_answer_falls_back_after_answer_limit_ms(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server, answer_limit_ms=300) as stack:
        stack.faults("openai", hang_rate=1.0)  # openai never answers
        fallback = None
        for _ in range(12):
            started = time.monotonic()
            answer = httpx.post(
                f"{stack.base_url}/route/execute",
                headers=stack.auth,
                json={
                    "messages": MESSAGES,
                    "max_tokens": 8,
                    "constraints": {"allowed_providers": ["openai", "deepseek"]},
                },
                timeout=30,
            )
            elapsed = time.monotonic() - started
            assert answer.status_code == 200, answer.text
            decision = answer.json()["decision"]
            assert decision["provider"] == "deepseek"
            if decision["fallbacks"]:
                fallback = decision["fallbacks"], elapsed
                break
    assert fallback is not None, "openai was never tried first"
    tried, took = fallback
    assert {(attempt["provider"], attempt["status"]) for attempt in tried} == {("openai", "timeout")}
    # 0.3 s on each stalled openai arm (one or both), then deepseek's answer; not the 2.5 s + limit
    assert took < 0.3 * len(tried) + 1.0


def _requests_answered(stack: ProxyStack, path: str, code: int) -> float:
    """``symphony_request_duration_seconds_count`` for ``path`` and status ``code``."""
    for family in parse_prometheus(httpx.get(f"{stack.url}/metrics").text):
        for sample in family.samples:
            route_and_code = sample.labels.get("route"), sample.labels.get("code")
            if sample.name.endswith("_count") and route_and_code == (path, str(code)):
                return float(sample.value)
    return 0.0


def test_a_client_that_hangs_up_mid_body_is_a_499_not_an_error(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    path = "/v1/chat/completions"
    with ProxyStack(redis_server) as stack:
        host, port = stack.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as client:
            head = f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            head += f"authorization: Bearer {stack.key}\r\ncontent-length: 1000\r\n\r\n"
            client.sendall(head.encode() + b'{"model": "auto", ')  # then hangs up, 980 bytes short
        deadline = time.monotonic() + 10
        while _requests_answered(stack, path, 499) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _requests_answered(stack, path, 499) == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert stack.sim_app.total() == 0
