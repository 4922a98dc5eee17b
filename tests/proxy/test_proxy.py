"""The proxy end to end: openai SDK -> proxy -> simulator, events read back from Redis."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis
from openai.types.chat import ChatCompletionMessageParam

from proxy.app import create_app
from proxy.emitter import EventEmitter
from proxy.routing.router import load_champion
from simulator import BackgroundServer, latency
from symphony.catalog import load_policy, resolve_policy_path
from symphony.events import Usage, new_id
from symphony.keys import STREAM_PREFIX
from symphony.redis_server import RedisServer
from symphony.serving import ChampionPolicy
from symphony.settings import Settings
from tests import reference
from tests.proxy_stack import CATALOG, SHARDS, ProxyStack, bearer, issue_key, read_events

CHAMPION: ChampionPolicy = load_champion(Settings().policy_file, CATALOG)
POLICY = load_policy(resolve_policy_path(Settings().policy_file), CATALOG)
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Route me somewhere good."}]
ROBOT: Any = [{"role": "robot", "content": "x"}]  # a role neither API knows


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[ProxyStack]:
    # No challenger share: every routed decision is the champion's, exactly.
    with ProxyStack(redis_server, traffic_split=0.0) as stack:
        yield stack


def sdk(stack: ProxyStack) -> openai.OpenAI:
    return stack.openai()


@dataclass
class Received:
    decision_id: str
    arm: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int


async def _one(clients: list[openai.AsyncOpenAI], index: int) -> Received:
    stream = index % 2 == 0
    client = clients[index % len(clients)]  # each with the key of its app
    headers = {"x-symphony-app": "not-me", "x-symphony-task": "summarise"}  # the key names the app
    if not stream:
        raw = await client.chat.completions.with_raw_response.create(
            model="auto", messages=MESSAGES, extra_headers=headers
        )
        completion = raw.parse()
        assert completion.usage is not None
        text = completion.choices[0].message.content or ""
        assert len(text.split()) == completion.usage.completion_tokens
        usage = completion.usage
    else:
        raw_stream = await client.chat.completions.with_raw_response.create(
            model="auto",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
        chunks = [chunk async for chunk in raw_stream.parse()]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        usage = chunks[-1].usage
        assert len(text.split()) == usage.completion_tokens
        raw = raw_stream  # type: ignore[assignment]
    return Received(
        raw.headers["x-symphony-decision-id"],
        raw.headers["x-symphony-arm"],
        stream,
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_every_request_gives_one_decision_and_one_usage(stack: ProxyStack) -> None:
    n = 16

    keys = [stack.issue_key(f"app-{i}") for i in range(3)]

    async def run() -> list[Received]:
        clients = [openai.AsyncOpenAI(base_url=stack.base_url, api_key=key, max_retries=0) for key in keys]
        try:
            return list(await asyncio.gather(*(_one(clients, i) for i in range(n))))
        finally:
            for client in clients:
                await client.close()

    received = {r.decision_id: r for r in asyncio.run(run())}
    assert len(received) == n
    events = stack.events()
    decisions, usages = events.decisions, events.usages
    assert len(decisions) == n and len(usages) == n
    by_decision = {u.decision_id: u for u in usages}
    assert set(by_decision) == {d.decision_id for d in decisions} == set(received)

    arms = [f"{provider}/{model}" for provider, spec in CATALOG.providers.items() for model in spec.models]
    expected = reference.champion_distribution(
        POLICY.utilities("summarise"), arms, POLICY.temperature, POLICY.exploration
    )
    for decision in decisions:
        got, usage = received[decision.decision_id], by_decision[decision.decision_id]
        arm = f"{decision.provider}/{decision.model}"
        assert arm == got.arm == f"{usage.provider}/{usage.model}" == decision.served_by
        assert decision.policy == "champion" and decision.policy_version == CHAMPION.version
        assert decision.candidates == arms
        assert decision.probabilities == pytest.approx(list(expected))
        assert decision.propensity == pytest.approx(expected[arms.index(arm)])
        assert decision.stream is got.stream and decision.fallbacks == []
        assert decision.task == "summarise" and decision.app.startswith("app-") and usage.app == decision.app
        assert usage.status == "ok" and usage.attempt == 1 and usage.fallback_from == ""
        assert (usage.input_tokens, usage.output_tokens) == (got.prompt_tokens, got.completion_tokens)
        price = CATALOG.arm(usage.provider, usage.model)
        assert usage.cost_usd == pytest.approx(
            reference.cost_usd(
                price.input_per_mtok, price.output_per_mtok, got.prompt_tokens, got.completion_tokens
            )
        )
        assert 0 < usage.ttfb_ms <= usage.latency_ms
        assert decision.ts <= usage.ts


@pytest.mark.parametrize("model", ["gpt-4o", "openai/gpt-4o"])
def test_override_routes_to_that_arm(stack: ProxyStack, model: str) -> None:
    client = sdk(stack)
    completion = client.chat.completions.create(model=model, messages=MESSAGES)
    assert completion.model == "gpt-4o"
    chunks = list(client.chat.completions.create(model=model, messages=MESSAGES, stream=True))
    # The client did not ask for usage: the chunk the proxy asked upstream for is not forwarded.
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    streamed = len("".join(c.choices[0].delta.content or "" for c in chunks).split())
    events = stack.events()
    decisions, usages = events.decisions, events.usages
    assert len(decisions) == len(usages) == 2
    for decision in decisions:
        assert (decision.provider, decision.model, decision.policy) == ("openai", "gpt-4o", "override")
        assert decision.propensity == 1.0 and decision.candidates == ["openai/gpt-4o"]
        assert decision.app == "tests" and decision.task == "chat"
        assert decision.overrides == {"model": model}
    stream_usage = next(
        u for u in usages if u.decision_id == next(d for d in decisions if d.stream).decision_id
    )
    assert stream_usage.output_tokens == streamed > 0


def test_models_lists_auto_arms_and_names(stack: ProxyStack) -> None:
    ids = [model.id for model in sdk(stack).models.list()]
    assert ids[0] == "auto"
    for provider, spec in CATALOG.providers.items():
        for model in spec.models:
            assert f"{provider}/{model}" in ids and model in ids


TOO_BIG = b'{"messages": [{"role": "user", "content": "' + b"x" * (1 << 20) + b'"}]}'


BAD_INPUTS: list[tuple[bytes, int, str | None]] = [
    (b'{"model": "auto"}', 400, "messages"),
    (b'{"messages": "hello"}', 400, "messages"),
    (b'{"messages": []}', 400, "messages"),
    (b'{"messages": [{"role": "robot", "content": "hi"}]}', 400, "messages.0.role"),
    (b'{"messages": [{"role": "user"}]}', 400, "messages.0.content"),
    (b'{"messages": [{"role": "user", "content": 5}]}', 400, "messages.0.content"),
    (b'{"messages": [{"role": "user", "content": "hi"}, {"content": "x"}]}', 400, "messages.1.role"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', 400, "stream"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', 400, "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1.5}', 400, "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": 9}', 400, "temperature"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "model": 4}', 400, "model"),
    (b'{"messages": [', 400, None),
    (b"", 400, None),
    (b"[1, 2]", 400, None),
    (b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}', 404, "model"),
    (TOO_BIG, 413, None),
]


def test_bad_input_is_a_4xx_naming_the_field(stack: ProxyStack) -> None:
    for body, status, param in BAD_INPUTS:
        response = httpx.post(
            f"{stack.base_url}/chat/completions",
            content=body,
            headers={"content-type": "application/json", **stack.auth},
        )
        case = body[:80]
        assert response.status_code == status, case
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, case
        assert error["type"] == "invalid_request_error", case
        assert error["param"] == param, case
        assert param is None or param in error["message"], case
    # Nothing was routed, so nothing was logged.
    events = stack.events()
    assert events.decisions == events.usages == []


def test_sdk_raises_bad_request_naming_the_field(stack: ProxyStack) -> None:
    bad: Any = [{"role": "robot", "content": "hi"}]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(stack).chat.completions.create(model="auto", messages=bad)
    assert caught.value.param == "messages.0.role"
    assert "messages.0.role" in caught.value.message
    with pytest.raises(openai.NotFoundError) as not_found:
        sdk(stack).chat.completions.create(model="gpt-5-imaginary", messages=MESSAGES)
    assert not_found.value.code == "model_not_found"


def test_upstream_errors_reach_the_sdk_as_its_own(stack: ProxyStack) -> None:
    stack.faults("perplexity", rate_429=1.0)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(stack).chat.completions.create(model="sonar", messages=MESSAGES, stream=True)
    assert "perplexity" in caught.value.message
    assert caught.value.response.headers["retry-after"] == "1"
    usages = stack.events().usages
    assert [(u.status, u.provider, u.output_tokens, u.cost_usd) for u in usages] == [
        ("429", "perplexity", 0, 0.0)
    ]
    assert usages[0].rate_limit["retry-after"] == "1"
    assert "x-ratelimit-remaining-requests" in usages[0].rate_limit


def test_unreachable_upstream_is_502(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    # The upstream's port is bound but never listening: connections are refused, and no server can take it.
    with socket.socket() as upstream:
        upstream.bind(("127.0.0.1", 0))
        settings = Settings(
            redis_url=redis_server.url,
            sim_url=f"http://127.0.0.1:{upstream.getsockname()[1]}",
            event_shards=SHARDS,
            simulated_providers="all",
        )
        with BackgroundServer(create_app(settings)) as proxy:
            response = httpx.post(
                f"{proxy.url}/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                headers=bearer(issue_key(redis_client)),
            )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    client = redis.Redis.from_url(redis_server.url)
    events = read_events(client)
    client.close()
    assert len(events.decisions) == 1 and [u.status for u in events.usages] == ["error"]


def test_emitter_keeps_events_while_redis_is_down(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    redis_server.stop()

    async def run() -> EventEmitter:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_server.url, socket_connect_timeout=0.2)
        emitter = EventEmitter(client, SHARDS, backoff_initial_s=0.02, backoff_max_s=0.1)
        emitter.start()
        for i in range(50):
            ts = 1_800_000_000_000 + i
            emitter.emit(
                Usage(
                    event_id=new_id(ts),
                    ts=ts,
                    decision_id=new_id(ts),
                    app="a",
                    provider="openai",
                    model="gpt-4o",
                    attempt=1,
                    status="ok",
                    ttfb_ms=1,
                    latency_ms=2,
                    input_tokens=3,
                    output_tokens=4,
                    cost_usd=0,
                )
            )
        await asyncio.sleep(0.3)  # a few failed attempts
        assert emitter.pending == 50 and emitter.published == 0
        await asyncio.to_thread(redis_server.start)
        await emitter.close()
        await client.aclose()
        return emitter

    emitter = asyncio.run(run())
    assert (emitter.published, emitter.dropped, emitter.pending) == (50, 0, 0)
    assert sum(redis_client.xlen(f"{STREAM_PREFIX}{shard}") for shard in range(SHARDS)) == 50


def test_client_gone_mid_stream_still_logs_usage(stack: ProxyStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        latency.MODEL_LATENCY, ("grok", "grok-3-mini"), latency.Latency(ttft_s=0.01, tokens_per_s=20)
    )
    body = {"model": "grok-3-mini", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream(
        "POST", f"{stack.base_url}/chat/completions", json=body, headers=stack.auth
    ) as response:
        assert response.status_code == 200
        next(response.iter_raw())  # the first event, then hang up
    events = stack.events()
    assert len(events.decisions) == 1
    assert [(u.decision_id, u.status) for u in events.usages] == [
        (events.decisions[0].decision_id, "cancelled")
    ]


def test_messages_endpoint_serves_the_anthropic_sdk_from_any_provider(stack: ProxyStack) -> None:
    client = stack.anthropic()
    for model in ("gpt-4o-mini", "claude-3-5-haiku-latest", "gemini-2.5-flash"):
        raw = client.messages.with_raw_response.create(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
        message = raw.parse()
        assert message.model == model and raw.headers["x-symphony-arm"].endswith(f"/{model}")
        assert message.usage.output_tokens > 0 and message.content[0].type == "text"
        with client.messages.stream(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text and final.usage.output_tokens == len(text.split())
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="auto", max_tokens=8, messages=ROBOT)
    assert "messages.0.role" in bad.value.message
    events = stack.events()
    assert len(events.decisions) == len(events.usages) == 6
    assert all(u.status == "ok" for u in events.usages)


def test_messages_errors_are_anthropic_shaped(stack: ProxyStack) -> None:
    for body in (b"{", b'{"model": "auto", "max_tokens": 8}', b"[]"):
        answer = httpx.post(f"{stack.url}/v1/messages", content=body, headers={"x-api-key": stack.key})
        assert answer.status_code == 400
        assert answer.json()["type"] == "error" and answer.json()["error"]["type"] == "invalid_request_error"
    too_big = httpx.post(f"{stack.url}/v1/messages", content=TOO_BIG, headers={"x-api-key": stack.key})
    assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "request_too_large"


NATIVE_BAD_INPUTS: list[tuple[str, bytes, int, str | None]] = [
    ("/v1/route/execute", b'{"task": "chat"}', 400, "messages"),
    (
        "/v1/route/execute",
        b'{"messages": [{"role": "user", "content": "x"}], "model": "gpt-4o"}',
        400,
        "model",
    ),
    ("/v1/route/execute", b'{"messages": [{"role": "user", "content": "x"}], "task": 5}', 400, "task"),
    (
        "/v1/route/execute",
        b'{"messages": [{"role": "user", "content": "x"}], "constraints": {"max_cost": 1}}',
        400,
        "constraints.max_cost",
    ),
    (
        "/v1/route/execute",
        b'{"messages": [{"role": "user", "content": "x"}], "constraints": {"allowed_providers": ["aws"]}}',
        400,
        "constraints.allowed_providers",
    ),
    (
        "/v1/route/execute",
        b'{"messages": [{"role": "user", "content": "x"}], "overrides": {"model": "gpt-9"}}',
        404,
        "overrides.model",
    ),
    (
        "/v1/route/execute",
        b'{"messages": [{"role": "user", "content": "x"}], "overrides": {"provider": "aws"}}',
        400,
        "overrides.provider",
    ),
    (
        "/v1/route/execute",
        b'{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}],'
        b' "overrides": {"model": "sonar"}}',
        400,
        "tools.0.function",
    ),
    (
        "/v1/route/execute",
        b'{"messages": [{"role": "user", "content": "x"}], "overrides": {"model": "sonar"},'
        b' "tools": [{"type": "function", "function": {"name": "f"}}]}',
        400,
        "tools",
    ),
    ("/v1/route/execute", TOO_BIG, 413, None),
    ("/v1/feedback", b'{"score": 0.5}', 400, "decision_id"),
    ("/v1/feedback", b'{"decision_id": "d", "score": 1.5}', 400, "score"),
    ("/v1/feedback", b'{"decision_id": "d", "score": "high"}', 400, "score"),
    ("/v1/feedback", b'{"decision_id": "d", "score": 1, "extra": 1}', 400, "extra"),
    ("/v1/feedback", b"[]", 400, None),
    ("/v1/feedback", TOO_BIG, 413, None),
]


def test_native_endpoints_refuse_bad_input_naming_the_field(stack: ProxyStack) -> None:
    for path, body, status, param in NATIVE_BAD_INPUTS:
        response = httpx.post(f"{stack.url}{path}", content=body, headers=stack.auth)
        case = (path, body[:100])
        assert response.status_code == status, (case, response.text)
        error = response.json()["error"]
        assert error["param"] == param, (case, error)
        assert param is None or param in error["message"], (case, error)
    events = stack.events()
    assert events.decisions == events.usages == events.feedback == []
