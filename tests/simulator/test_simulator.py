"""The provider simulator, spoken to by the official openai SDK over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from simulator import BackgroundServer, create_app, latency
from simulator.generation import count_input_tokens
from symphony.catalog import load_catalog
from symphony.clock import RealClock, SimulatedClock, monotonic, wall_ms

CATALOG = load_catalog()
SYSTEM, QUESTION = "You are terse.", "Which provider should serve this request, and why?"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": QUESTION},
]
PROMPT_TOKENS = count_input_tokens([SYSTEM, QUESTION])


@pytest.fixture(scope="module")
def sim() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(RealClock(), CATALOG, seed=7)) as server:
        yield server


def openai_compatible(provider: str) -> bool:
    return CATALOG.providers[provider].wire == "openai"


def client(sim: BackgroundServer, provider: str) -> openai.OpenAI:
    base_url = CATALOG.providers[provider].simulated_base_url(sim.url, provider)
    return openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)


@pytest.mark.parametrize("provider", sorted(filter(openai_compatible, CATALOG.providers)))
def test_non_stream_usage_equals_content(sim: BackgroundServer, provider: str) -> None:
    model = next(iter(CATALOG.providers[provider].models))
    response = client(sim, provider).chat.completions.create(model=model, messages=MESSAGES)
    assert response.object == "chat.completion"
    assert response.model == model
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert response.usage is not None
    content = choice.message.content or ""
    assert response.usage.completion_tokens == len(content.split()) > 0
    assert response.usage.prompt_tokens == PROMPT_TOKENS
    assert response.usage.total_tokens == PROMPT_TOKENS + response.usage.completion_tokens


def test_stream_usage_equals_streamed_tokens(sim: BackgroundServer) -> None:
    stream = client(sim, "openai").chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    deltas = [
        chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content
    ]
    finish = [
        chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert last.usage.completion_tokens == len(deltas) == len("".join(deltas).split())
    assert last.usage.prompt_tokens == PROMPT_TOKENS


def test_stream_without_include_usage_has_no_usage_chunk(sim: BackgroundServer) -> None:
    stream = client(sim, "deepseek").chat.completions.create(
        model="deepseek-chat",
        messages=MESSAGES,
        stream=True,
    )
    chunks = list(stream)
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_max_tokens_cuts_with_length(sim: BackgroundServer) -> None:
    openai_client = client(sim, "openai")
    response = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        max_tokens=2,
    )
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None and response.usage.completion_tokens == 2
    assert len((response.choices[0].message.content or "").split()) == 2

    stream = openai_client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        max_completion_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3 == len(text.split())


def test_unknown_model_is_404(sim: BackgroundServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(sim, "openai").chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    body = caught.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_unknown_provider_and_bad_json(sim: BackgroundServer) -> None:
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=f"{sim.url}/nobody/v1", api_key="k", max_retries=0).chat.completions.create(
            model="x", messages=MESSAGES
        )
    response = httpx.post(
        f"{sim.url}/openai/v1/chat/completions", content=b"{not json", headers={"authorization": "Bearer k"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_models_and_health(sim: BackgroundServer) -> None:
    for provider, spec in CATALOG.providers.items():
        if not openai_compatible(provider):
            continue
        assert [model.id for model in client(sim, provider).models.list()] == list(spec.models)
    assert httpx.get(f"{sim.url}/health").json() == {"status": "ok", "service": "sim"}


def test_latency_runs_on_the_shared_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    slow = latency.Latency(ttft_s=2.0, tokens_per_s=20.0)  # about 4 s of event time per answer
    monkeypatch.setitem(latency.MODEL_LATENCY, ("openai", "gpt-4o"), slow)
    fast_clock = SimulatedClock(start_ms=wall_ms(), anchor_ms=wall_ms(), speed=200.0)
    with BackgroundServer(create_app(fast_clock, CATALOG, seed=1)) as server:
        # Only the two answers are timed: building the SDK client and the first request's
        # connection set-up cost tens of milliseconds of wall time on a busy machine.
        openai_client = client(server, "openai")
        openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        started = monotonic()
        response = openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        stream = openai_client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
        )
        assert len(list(stream)) > 3
        elapsed = monotonic() - started
    assert response.usage is not None
    event_seconds = 2 * slow.total_s(16)  # gpt-4o answers at least 16 words
    assert elapsed < event_seconds / 10
