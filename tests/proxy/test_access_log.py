"""The proxy's access log: one `symphony.access` line per routed request, with what the client saw."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from symphony.quotas import load_quota_policy
from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack
from tests.waiting import wait_until

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def _policy_with_openai_rpm(tmp_path: Path, rpm: int) -> Path:
    data = json.loads(load_quota_policy.__wrapped__().model_dump_json())  # type: ignore[attr-defined]
    data["providers"]["openai"]["caps"]["requests"]["minute"] = rpm
    path = tmp_path / "quotas.json"
    path.write_text(json.dumps(data))
    return path


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [dict(r.fields) for r in caplog.records if r.name == "symphony.access"]  # type: ignore[attr-defined]


def _line_of(caplog: pytest.LogCaptureFixture, decision_id: str) -> dict[str, Any]:
    """The request's one line. A served answer's line is logged on the proxy's next loop turn after the
    answer is written (the client does not wait for it), so it may come just after the response."""

    def found() -> list[dict[str, Any]]:
        return [line for line in _lines(caplog) if line["decision_id"] == decision_id]

    wait_until(found, 5.0, every_s=0.005)
    (line,) = found()
    return line


def _timed_post(stack: ProxyStack, path: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(f"{stack.url}{path}", json=body, headers=stack.auth, timeout=30)
    return response, (time.monotonic() - started) * 1000


def test_served_fallback_and_refused_requests_each_log_one_line(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="symphony.access")
    policy = _policy_with_openai_rpm(tmp_path, 1)
    with ProxyStack(redis_server, quota_policy_file=policy, breaker_failures=1000) as stack:
        served, elapsed_ms = _timed_post(stack, "/v1/chat/completions", {**CHAT, "model": "gpt-4o-mini"})
        assert served.status_code == 200
        line = _line_of(caplog, served.headers["x-symphony-decision-id"])
        assert line["arm"] == served.headers["x-symphony-arm"] == "openai/gpt-4o-mini"
        assert (line["status"], line["fallbacks"], line["app"], line["stream"]) == (200, [], "tests", False)
        assert 0 < line["latency_ms"] <= elapsed_ms

        # openai's one request a minute is spent: the quota gate refuses the next one before any attempt
        refused = httpx.post(
            f"{stack.base_url}/chat/completions", json={**CHAT, "model": "gpt-4o-mini"}, headers=stack.auth
        )
        assert refused.status_code == 429
        line = _lines(caplog)[-1]  # logged before the answer went out
        assert (line["status"], line["arm"], line["fallbacks"]) == (429, None, [])
        assert line["decision_id"] and len(_lines(caplog)) == 2
        assert line["error"] == refused.json()["error"]["code"] == "quota_exhausted"

        # perplexity answers every request with a server error: a request that tried it first falls back
        stack.faults("perplexity", rate_5xx=1.0)
        route = {**CHAT, "constraints": {"allowed_providers": ["perplexity", "deepseek"]}}
        tries = 0
        while tries < 40:
            tries += 1
            answer = httpx.post(f"{stack.url}/v1/route/execute", json=route, headers=stack.auth, timeout=30)
            decision = answer.json()["decision"]
            if decision["fallbacks"]:
                break
        assert answer.status_code == 200 and decision["fallbacks"], "no request tried perplexity first"
        line = _line_of(caplog, decision["decision_id"])
        assert line["arm"] == f"{decision['provider']}/{decision['model']}" == "deepseek/deepseek-chat"
        assert line["status"] == 200
        (fallback,) = line["fallbacks"]
        assert (fallback["arm"], fallback["status"]) == ("perplexity/sonar", "5xx")
        assert 500 <= fallback["http_status"] < 600

        # a provider's own 429, with no other arm for the pinned model: the client gets it
        stack.faults("perplexity", rate_429=1.0)
        limited = httpx.post(
            f"{stack.base_url}/chat/completions", json={**CHAT, "model": "sonar"}, headers=stack.auth
        )
        assert limited.status_code == 429
        line = _line_of(caplog, limited.headers["x-symphony-decision-id"])
        assert (line["status"], line["arm"]) == (429, None)
        assert [(f["arm"], f["status"], f["http_status"]) for f in line["fallbacks"]] == [
            ("perplexity/sonar", "429", 429)
        ]
        assert len(_lines(caplog)) == 3 + tries  # one line per request, and only one


def test_an_embedding_logs_its_line(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="symphony.access")
    with ProxyStack(redis_server) as stack:
        answer = httpx.post(
            f"{stack.base_url}/embeddings",
            json={"model": "text-embedding-3-small", "input": "hi"},
            headers=stack.auth,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        line = _line_of(caplog, answer.headers["x-symphony-decision-id"])
        metrics = httpx.get(f"{stack.url}/metrics", timeout=30).text
    assert (line["app"], line["task"], line["arm"], line["status"]) == (
        "tests",
        "embeddings",
        "openai/text-embedding-3-small",
        200,
    )
    assert line["fallbacks"] == [] and line["latency_ms"] > 0
    # Its attempt is timed into /metrics as a chat attempt is.
    counted = [
        row
        for row in metrics.splitlines()
        if row.startswith("symphony_provider_attempt_duration_seconds_count") and 'provider="openai"' in row
    ]
    assert counted and counted[0].endswith(" 1.0"), counted
