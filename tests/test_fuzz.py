"""Fuzzing every inbound endpoint: malformed bodies get a 4xx that says why, never a 5xx or a crash.

Bodies are drawn three ways: arbitrary bytes, arbitrary JSON, and valid requests
with one field replaced by arbitrary JSON (the kind of mistake an app makes). The
proxy runs once for the module in front of the real simulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symphony.redis_server import RedisServer, free_port
from tests.proxy_stack import ProxyStack

MESSAGES = [{"role": "user", "content": "hi"}]
VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "auto", "messages": MESSAGES, "max_tokens": 4},
    "/v1/messages": {"model": "auto", "max_tokens": 4, "messages": MESSAGES},
    "/v1/route/execute": {
        "task": "chat",
        "messages": MESSAGES,
        "max_tokens": 4,
        "constraints": {"max_cost_usd": 0.01, "allowed_providers": ["openai", "grok"]},
        "overrides": {},
    },
    "/v1/feedback": {"decision_id": "01JABCDEFGHJKMNPQRSTVWXYZ0", "score": 0.5, "source": "fuzz"},
}
ENDPOINTS = list(VALID)
# Fields a mutation may replace, beyond the valid body's own.
MESSAGE_FIELDS = ["role", "content", "tool_calls", "tool_call_id", "name"]
EXTRA_FIELDS = [
    "stream",
    "tools",
    "tool_choice",
    "response_format",
    "stop",
    "n",
    "system",
    "temperature",
    "model",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, path: str) -> bytes:
    """A valid body with one field, top-level or in its message, replaced by any JSON."""
    body = dict(VALID[path])
    if "messages" in body and draw(st.booleans()):
        message = {**MESSAGES[0], draw(st.sampled_from(MESSAGE_FIELDS)): draw(json_values)}
        body["messages"] = [message]
    else:
        body[draw(st.sampled_from([*body, *EXTRA_FIELDS]))] = draw(json_values)
    return json.dumps(body).encode()


def bodies(path: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        json_values.map(lambda value: json.dumps(value).encode()),
        mutated(path),
    )


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyStack]:
    server = RedisServer(port=free_port(), data_dir=Path(tmp_path_factory.mktemp("redis")), persist=False)
    server.start()
    try:
        with ProxyStack(server) as stack:
            yield stack
    finally:
        server.stop()


def check(client: httpx.Client, path: str, body: bytes) -> None:
    answer = client.post(path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code < 500, (path, body, answer.status_code, answer.text)
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert isinstance(error["message"], str) and error["message"], (path, body, answer.text)
        if path == "/v1/messages":
            assert answer.json()["type"] == "error"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_malformed_bodies_never_get_a_5xx(proxy: ProxyStack, path: str) -> None:
    with httpx.Client(base_url=proxy.url, timeout=30, headers=proxy.auth) as client:

        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(body=bodies(path))
        def run(body: bytes) -> None:
            check(client, path, body)

        run()
        # The proxy is still whole: a valid request is served.
        assert client.post(path, json=VALID[path]).status_code in (200, 202)
