"""What a request may ask and how long it may take: n > 1 refused in each SDK's shape, the native
latency_budget_ms bounding the whole request, and ANSWER_LIMIT_MS making a stalled non-streamed
answer fall back (the simulator's hang fault stands in for the stalling provider)."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

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
