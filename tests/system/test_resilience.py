"""Fallbacks, breakers and deadlines against the real simulator with faults set through its admin API.

To know which arm a request tries first, the tests publish a challenger that puts
all its weight on one arm and serve every request with it (``traffic_split=1``):
the decision is still a routed one, so the fallbacks follow the champion's order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import orjson
import pytest
import redis

from symphony.events import Usage
from symphony.keys import CHALLENGER_KEY
from symphony.redis_server import RedisServer
from tests.proxy_stack import Events, ProxyStack

FIRST = "openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Tell me something."}]
MESSAGES_ANTHROPIC: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Tell me something."}]
TTFT_LIMIT_MS = 300


@pytest.fixture
def stack(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[ProxyStack]:
    redis_client.set(CHALLENGER_KEY, orjson.dumps({"version": "first", "weights": {FIRST: 1.0}}))
    with ProxyStack(
        redis_server, traffic_split=1.0, ttft_limit_ms=TTFT_LIMIT_MS, breaker_failures=3
    ) as stack:
        yield stack


def execute(stack: ProxyStack, **body: object) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/route/execute", json={"messages": MESSAGES, **body}, headers=stack.auth, timeout=30
    )


def attempts_of(events: Events, decision_id: str) -> list[Usage]:
    return sorted((u for u in events.usages if u.decision_id == decision_id), key=lambda u: u.attempt)


def assert_chain(usages: list[Usage], expected: list[tuple[str, str]]) -> None:
    """Attempts numbered 1..n, each ``fallback_from`` the one before, with these (arm, status)."""
    assert [(f"{u.provider}/{u.model}", u.status) for u in usages] == expected
    assert [u.attempt for u in usages] == list(range(1, len(expected) + 1))
    assert [u.fallback_from for u in usages] == ["", *(arm for arm, _ in expected[:-1])]


def test_429s_fall_back_and_a_provider_refusing_most_cools_for_retry_after(stack: ProxyStack) -> None:
    # The simulator's injected 429s say retry-after: 1 and show no limit used up, so one 429 only
    # lowers openai's share; 429s on at least half its attempts (3 or more: breaker_failures)
    # cool the whole provider for the retry-after it gave.
    stack.faults("openai", rate_429=1.0)
    allowed = {"allowed_providers": ["openai", "grok"]}
    first = execute(stack, constraints=allowed)
    assert first.status_code == 200, first.text
    decision = first.json()["decision"]
    assert decision["chosen"] == FIRST and (decision["provider"], decision["model"]) == (
        "grok",
        "grok-3-mini",
    )
    assert decision["fallbacks"] == [
        {"provider": "openai", "model": "gpt-4o-mini", "status": "429"},
        {"provider": "openai", "model": "gpt-4o", "status": "429"},
    ]
    assert first.headers["x-symphony-arm"] == "grok/grok-3-mini"
    second = execute(stack, constraints=allowed).json()["decision"]
    assert [f["status"] for f in second["fallbacks"]] == ["429"]  # the third 429: openai cools
    cooled = execute(stack, constraints=allowed).json()["decision"]
    assert cooled["fallbacks"] == [] and cooled["chosen"] == "grok/grok-3-mini"
    time.sleep(1.1)
    stack.faults("openai")
    again = execute(stack, constraints=allowed).json()["decision"]
    assert (again["provider"], again["fallbacks"]) == ("openai", [])
    events = stack.events()
    by_id = {d.decision_id: d for d in events.decisions}
    logged = by_id[decision["decision_id"]]
    assert (logged.fallbacks, logged.fallback_statuses, logged.served_by) == (
        [FIRST, "openai/gpt-4o"],
        ["429", "429"],
        "grok/grok-3-mini",
    )
    assert logged.candidates == ["openai/gpt-4o-mini", "openai/gpt-4o", "grok/grok-3-mini"]
    assert by_id[cooled["decision_id"]].candidates == ["grok/grok-3-mini"]
    chain = attempts_of(events, decision["decision_id"])
    assert_chain(chain, [(FIRST, "429"), ("openai/gpt-4o", "429"), ("grok/grok-3-mini", "ok")])
    assert chain[0].rate_limit["retry-after"] == "1" and chain[0].cost_usd == 0
    assert stack.sim_app.answers[("openai", 429)] == 3  # cooling kept every later request away


def test_5xx_falls_back_down_the_champion_order(stack: ProxyStack) -> None:
    stack.faults("openai", rate_5xx=1.0)
    answer = execute(stack, constraints={"allowed_providers": ["openai", "deepseek"]}, task="code")
    assert answer.status_code == 200, answer.text
    decision = answer.json()["decision"]
    # code: deepseek-chat (0.70) ranks above gpt-4o (0.65).
    assert [f["status"] for f in decision["fallbacks"]] == ["5xx"]
    assert decision["provider"] == "deepseek"
    events = stack.events()
    assert_chain(
        attempts_of(events, decision["decision_id"]), [(FIRST, "5xx"), ("deepseek/deepseek-chat", "ok")]
    )


def test_breaker_opens_after_consecutive_failures(stack: ProxyStack) -> None:
    stack.faults("openai", rate_5xx=1.0)
    for _ in range(3):  # breaker_failures=3
        assert execute(stack, constraints={"allowed_providers": ["openai", "grok"]}).status_code == 200
    decision = execute(stack, constraints={"allowed_providers": ["openai", "grok"]}).json()["decision"]
    assert decision["chosen"] == "grok/grok-3-mini" and decision["fallbacks"] == []
    pinned = execute(stack, overrides={"provider": "openai"})
    assert pinned.status_code == 503 and int(pinned.headers["retry-after"]) >= 1
    assert pinned.json()["error"]["code"] == "providers_unavailable"


@pytest.mark.parametrize("stream", [False, True])
def test_slow_first_token_falls_back_before_any_byte_reaches_the_client(
    stack: ProxyStack, stream: bool
) -> None:
    stack.faults("openai", slow_ttft_ms=3000)
    client = stack.openai()
    started = time.monotonic()
    if stream:
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=MESSAGES,
            max_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(raw.parse())
        served_model = {chunk.model for chunk in chunks}
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    else:
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES, max_tokens=10)
        served_model = {raw.parse().model}
    elapsed = time.monotonic() - started
    assert elapsed < 2.0  # never waited out the 3 s first token
    # chat: after gpt-4o-mini (0.70) come claude-3-5-haiku and gemini (0.65), catalog order.
    assert raw.headers["x-symphony-arm"] == "anthropic/claude-3-5-haiku-latest"
    assert served_model == {"claude-3-5-haiku-latest"}  # every byte the client saw came from the fallback
    events = stack.events()
    (decision,) = events.decisions
    assert decision.fallbacks == [FIRST] and decision.fallback_statuses == ["timeout"]
    assert_chain(
        attempts_of(events, decision.decision_id),
        [(FIRST, "timeout"), ("anthropic/claude-3-5-haiku-latest", "ok")],
    )


def test_a_hang_is_cut_by_the_request_deadline(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server, ttft_limit_ms=30_000, request_deadline_ms=600) as stack:
        stack.faults("grok", hang_rate=1.0)
        client = stack.openai()
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="grok-3-mini", messages=MESSAGES)
        assert 0.5 < time.monotonic() - started < 2.0
        assert caught.value.status_code == 504
        assert caught.value.code == "deadline_exceeded"
        events = stack.events()
    (usage,) = events.usages
    assert (usage.provider, usage.status, usage.attempt) == ("grok", "timeout", 1)
    assert events.decisions[0].fallback_statuses == ["timeout"] and events.decisions[0].served_by == ""


def test_a_hang_falls_back_at_the_first_token_limit(stack: ProxyStack) -> None:
    stack.faults("openai", hang_rate=1.0)
    answer = execute(stack, stream=True, max_tokens=5)
    assert answer.status_code == 200
    assert answer.text.startswith("event: decision\ndata: ")
    decision = orjson.loads(answer.text.split("\n", 2)[1].removeprefix("data: "))
    assert decision["fallbacks"] == [{"provider": "openai", "model": "gpt-4o-mini", "status": "timeout"}]
    assert answer.text.rstrip().endswith("data: [DONE]")


def test_when_every_candidate_fails_the_sdk_raises_its_own_error(stack: ProxyStack) -> None:
    stack.faults("openai", rate_429=1.0)
    client = stack.openai()
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert limited.value.response.headers["retry-after"] == "1"
    stack.faults("deepseek", rate_5xx=1.0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True)
    events = stack.events()
    assert sorted(u.status for u in events.usages) == ["429", "5xx"]
    assert all(d.served_by == "" and d.policy == "override" for d in events.decisions)


def test_anthropic_clients_get_fallbacks_and_their_own_errors(stack: ProxyStack) -> None:
    stack.faults("openai", slow_ttft_ms=3000)
    client = stack.anthropic()
    with client.messages.stream(model="auto", max_tokens=10, messages=MESSAGES_ANTHROPIC) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.model == "claude-3-5-haiku-latest"  # the fallback after gpt-4o-mini
    stack.faults("grok", rate_429=1.0)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="grok-3-mini", max_tokens=10, messages=MESSAGES_ANTHROPIC)
    assert limited.value.response.headers["retry-after"] == "1"
    stack.faults("deepseek", rate_5xx=1.0)
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(model="deepseek-chat", max_tokens=10, messages=MESSAGES_ANTHROPIC)
    events = stack.events()
    statuses = sorted((u.provider, u.status) for u in events.usages)
    assert statuses == [("anthropic", "ok"), ("deepseek", "5xx"), ("grok", "429"), ("openai", "timeout")]
