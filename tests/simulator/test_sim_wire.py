"""The simulator's wire formats, spoken to by the official SDKs over real HTTP.

Anthropic through ``anthropic``, Gemini through ``google-genai``, the five
OpenAI-compatible providers through ``openai``, each at its real base path; then
the admin API: rate limits, faults and ground truth.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from simulator import BackgroundServer, create_app
from simulator.generation import count_input_tokens
from symphony.catalog import load_catalog
from symphony.clock import RealClock, monotonic

CATALOG = load_catalog()
CLAUDE, GEMINI = "claude-3-5-haiku-latest", "gemini-2.5-flash"
SYSTEM, QUESTION = "You are terse.", "Which provider should serve this request, and why?"
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "days"],
}
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "score": {"type": "number"}, "tags": {"type": "array"}},
    "required": ["title", "score"],
}
OPENAI_COMPATIBLE = sorted(p for p, spec in CATALOG.providers.items() if spec.wire == "openai")


@pytest.fixture(scope="module")
def sim() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(RealClock(), CATALOG, seed=11)) as server:
        yield server


@pytest.fixture(autouse=True)
def clean_admin(sim: BackgroundServer) -> Iterator[None]:
    yield
    httpx.delete(f"{sim.url}/admin/faults").raise_for_status()
    httpx.delete(f"{sim.url}/admin/limits").raise_for_status()


def base(sim: BackgroundServer, provider: str) -> str:
    return CATALOG.providers[provider].simulated_base_url(sim.url, provider)


def claude(sim: BackgroundServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{sim.url}/anthropic", api_key="sk-ant-test", max_retries=0)


def gemini(sim: BackgroundServer) -> genai.Client:
    options = types.HttpOptions(base_url=f"{sim.url}/gemini", api_version="v1beta")
    return genai.Client(api_key="test-key", http_options=options)


def oai(sim: BackgroundServer, provider: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base(sim, provider), api_key="test", max_retries=0)


def admin(sim: BackgroundServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.put(f"{sim.url}/admin/{path}", json=body)


# --- Anthropic Messages -----------------------------------------------------------------------


def test_anthropic_message_usage_equals_content(sim: BackgroundServer) -> None:
    message = claude(sim).messages.create(
        model=CLAUDE,
        max_tokens=200,
        system=SYSTEM,
        extra_body={"temperature": 0.2, "top_p": 0.9},  # this SDK release no longer names them
        messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
    )
    assert message.type == "message" and message.role == "assistant" and message.model == CLAUDE
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    [block] = message.content
    assert block.type == "text"
    assert message.usage.output_tokens == len(block.text.split()) > 0
    assert message.usage.input_tokens == count_input_tokens([SYSTEM, QUESTION])


def test_anthropic_stream_events_and_usage(sim: BackgroundServer) -> None:
    with claude(sim).messages.stream(
        model=CLAUDE, max_tokens=200, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    raw_kinds = [e.type for e in events if e.type not in ("text",)]
    assert raw_kinds.index("message_delta") > raw_kinds.index("content_block_stop")
    text = "".join(block.text for block in final.content if block.type == "text")
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(text.split()) > 0
    assert final.usage.input_tokens == count_input_tokens([QUESTION])


def test_anthropic_max_tokens_and_stop_sequence(sim: BackgroundServer) -> None:
    client = claude(sim)
    short = client.messages.create(model=CLAUDE, max_tokens=3, messages=[{"role": "user", "content": "hi"}])
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3
    for _ in range(3):
        stopped = client.messages.create(
            model=CLAUDE, max_tokens=500, stop_sequences=["END"], messages=[{"role": "user", "content": "hi"}]
        )
        assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "END"
        text = stopped.content[0].text  # type: ignore[union-attr]
        assert "END" not in text and stopped.usage.output_tokens == len(text.split()) >= 1


def test_anthropic_tool_use_round_trip(sim: BackgroundServer) -> None:
    client = claude(sim)
    tools: list[Any] = [
        {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_SCHEMA},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}},
    ]
    ask: list[Any] = [{"role": "user", "content": "Use get_weather for Paris, then get_time."}]
    first = client.messages.create(model=CLAUDE, max_tokens=300, tools=tools, messages=ask)
    assert first.stop_reason == "tool_use"
    uses = [block for block in first.content if block.type == "tool_use"]
    assert [use.name for use in uses] == ["get_weather", "get_time"]
    weather: Any = uses[0].input
    assert set(weather) >= {"city", "days"} and 1 <= weather["days"] <= 7
    assert first.usage.output_tokens == sum(len(json.dumps(use.input).split()) for use in uses)

    results = [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"} for use in uses]
    history = [*ask, {"role": "assistant", "content": first.content}, {"role": "user", "content": results}]
    second = client.messages.create(model=CLAUDE, max_tokens=300, tools=tools, messages=history)
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"

    forced = client.messages.create(
        model=CLAUDE,
        max_tokens=300,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_time"},
        messages=[{"role": "user", "content": "anything"}],
    )
    assert [b.name for b in forced.content if b.type == "tool_use"] == ["get_time"]


def test_anthropic_streamed_tool_use(sim: BackgroundServer) -> None:
    tools: list[Any] = [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}]
    with claude(sim).messages.stream(
        model=CLAUDE,
        max_tokens=300,
        tools=tools,
        messages=[{"role": "user", "content": "get_weather for Lyon"}],
    ) as stream:
        deltas = [e for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    [use] = final.content
    assert use.type == "tool_use" and set(use.input) >= {"city", "days"}
    assert len(deltas) == final.usage.output_tokens


def test_anthropic_images_and_json_output(sim: BackgroundServer) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    messages: list[Any] = [
        {"role": "user", "content": [image, {"type": "text", "text": "Describe as JSON."}]}
    ]
    message = claude(sim).messages.create(
        model=CLAUDE,
        max_tokens=500,
        output_config={"format": {"type": "json_schema", "schema": ANSWER_SCHEMA}},
        messages=messages,
    )
    [block] = message.content
    assert block.type == "text"
    answer = json.loads(block.text)
    assert set(answer) == {"title", "score"} and isinstance(answer["score"], float)


def test_anthropic_errors(sim: BackgroundServer) -> None:
    with pytest.raises(anthropic.AuthenticationError) as no_key:
        claude(sim).messages.create(
            model=CLAUDE,
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"Authorization": anthropic.Omit()},
        )
    assert no_key.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "x-api-key header is required"},
    }
    with pytest.raises(anthropic.BadRequestError) as no_max:
        claude(sim).messages.create(model=CLAUDE, messages=[{"role": "user", "content": "x"}], max_tokens=0)
    assert "max_tokens" in str(no_max.value)
    with pytest.raises(anthropic.NotFoundError):
        claude(sim).messages.create(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    no_version = httpx.post(
        f"{sim.url}/anthropic/v1/messages",
        headers={"x-api-key": "k"},
        json={"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]
    wrong_role = httpx.post(
        f"{sim.url}/anthropic/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
    )
    assert wrong_role.status_code == 400 and wrong_role.json()["error"]["type"] == "invalid_request_error"


# --- Gemini ---------------------------------------------------------------------------------------


def test_gemini_generate_and_stream(sim: BackgroundServer) -> None:
    client = gemini(sim)
    config = types.GenerateContentConfig(system_instruction=SYSTEM, temperature=0.3, top_p=0.9)
    answer = client.models.generate_content(model=GEMINI, contents=QUESTION, config=config)
    usage = answer.usage_metadata
    assert usage is not None and answer.text is not None
    assert answer.candidates is not None and answer.candidates[0].finish_reason == types.FinishReason.STOP
    assert usage.candidates_token_count == len(answer.text.split()) > 0
    assert usage.prompt_token_count == count_input_tokens([SYSTEM, QUESTION])
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count

    chunks = list(client.models.generate_content_stream(model=GEMINI, contents=QUESTION))
    text = "".join(chunk.text or "" for chunk in chunks)
    last = chunks[-1]
    assert len(chunks) > 1 and last.usage_metadata is not None and last.candidates is not None
    assert last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata.candidates_token_count == len(text.split())


def test_gemini_max_tokens_stop_and_json(sim: BackgroundServer) -> None:
    client = gemini(sim)
    short = client.models.generate_content(
        model=GEMINI, contents="hi", config=types.GenerateContentConfig(max_output_tokens=2)
    )
    assert short.candidates is not None and short.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert short.usage_metadata is not None and short.usage_metadata.candidates_token_count == 2
    stopped = client.models.generate_content(
        model=GEMINI, contents="hi", config=types.GenerateContentConfig(stop_sequences=["STOP"])
    )
    assert stopped.text is not None and "STOP" not in stopped.text
    schema = {
        "type": "OBJECT",
        "properties": {"a": {"type": "STRING"}, "b": {"type": "INTEGER"}},
        "required": ["a", "b"],
    }
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=schema)
    data = json.loads(client.models.generate_content(model=GEMINI, contents="JSON", config=config).text or "")
    assert set(data) == {"a", "b"} and isinstance(data["b"], int)
    image = types.Part.from_bytes(data=b"\x89PNG", mime_type="image/png")
    assert client.models.generate_content(model=GEMINI, contents=[image, "What is this?"]).text


def test_gemini_function_call_round_trip(sim: BackgroundServer) -> None:
    client = gemini(sim)
    weather = types.FunctionDeclaration(
        name="get_weather", description="Weather in a city", parameters_json_schema=WEATHER_SCHEMA
    )
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[weather])])
    ask = types.Content(role="user", parts=[types.Part(text="Call get_weather for Rome.")])
    first = client.models.generate_content(model=GEMINI, contents=[ask], config=config)
    assert first.function_calls is not None
    [call] = first.function_calls
    assert call.name == "get_weather" and call.args is not None and set(call.args) >= {"city", "days"}
    assert first.candidates is not None and first.candidates[0].content is not None
    result = types.Part.from_function_response(name="get_weather", response={"forecast": "sunny"})
    history = [ask, first.candidates[0].content, types.Content(role="user", parts=[result])]
    second = client.models.generate_content(model=GEMINI, contents=history, config=config)
    assert second.function_calls is None and second.text

    forced = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
        ),
    )
    chunks = list(client.models.generate_content_stream(model=GEMINI, contents="anything", config=forced))
    assert [c.name for chunk in chunks for c in chunk.function_calls or ()] == ["get_weather"]


def test_gemini_errors(sim: BackgroundServer) -> None:
    url = f"{sim.url}/gemini/v1beta/models/{GEMINI}:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    no_key = httpx.post(url, json=body)
    assert no_key.status_code == 401 and no_key.json()["error"]["status"] == "UNAUTHENTICATED"
    assert httpx.post(url + "?key=k", json=body).status_code == 200
    bad = httpx.post(url, json={"contents": []}, headers={"x-goog-api-key": "k"})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "contents" in bad.json()["error"]["message"]
    client = gemini(sim)  # a client closes its connections when collected: keep it
    with pytest.raises(genai_errors.ClientError) as unknown:
        client.models.generate_content(model="gpt-4o", contents="x")
    assert unknown.value.code == 404


# --- OpenAI-compatible providers ------------------------------------------------------------------


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
def test_openai_compatible_stream_tools_and_json(sim: BackgroundServer, provider: str) -> None:
    client, model = oai(sim, provider), next(iter(CATALOG.providers[provider].models))
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(text.split()) > 0

    tools: list[Any] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}
    ]
    ask: list[Any] = [{"role": "user", "content": "Please call get_weather."}]
    call = client.chat.completions.create(model=model, messages=ask, tools=tools)
    choice = call.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    [tool_call] = choice.message.tool_calls
    assert tool_call.type == "function"
    arguments = json.loads(tool_call.function.arguments)
    assert set(arguments) >= {"city", "days"}
    assert call.usage is not None and call.usage.completion_tokens == len(
        tool_call.function.arguments.split()
    )
    history = [*ask, choice.message.model_dump(exclude_none=True)]
    history.append({"role": "tool", "tool_call_id": tool_call.id, "content": "sunny"})
    after = client.chat.completions.create(model=model, messages=history, tools=tools)
    assert after.choices[0].finish_reason == "stop" and after.choices[0].message.content

    fmt: Any = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}}
    structured = client.chat.completions.create(model=model, messages=ask, response_format=fmt)
    assert set(json.loads(structured.choices[0].message.content or "")) == {"title", "score"}
    plain_json = client.chat.completions.create(
        model=model, messages=ask, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(plain_json.choices[0].message.content or ""), dict)


def test_openai_streamed_tool_calls_and_stop(sim: BackgroundServer) -> None:
    client = oai(sim, "openai")
    tools: list[Any] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
    ]
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "get_time, then get_weather"}],
            tools=tools,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = calls.setdefault(delta.index, {"name": "", "arguments": ""})
            entry["name"] += (delta.function.name or "") if delta.function else ""
            entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_time", "get_weather"]
    assert set(json.loads(calls[1]["arguments"])) >= {"city", "days"}
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"]

    stopped = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stop=["\n\nDONE"]
    )
    content = stopped.choices[0].message.content or ""
    assert stopped.choices[0].finish_reason == "stop" and "DONE" not in content
    assert stopped.usage is not None and stopped.usage.completion_tokens == len(content.split())


def test_openai_auth_and_validation(sim: BackgroundServer) -> None:
    with pytest.raises(openai.AuthenticationError) as no_key:
        oai(sim, "grok").chat.completions.create(
            model="grok-3-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"Authorization": openai.Omit()},
        )
    assert no_key.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as bad:
        oai(sim, "deepseek").chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "x"}], temperature=3
        )
    assert bad.value.param == "temperature"
    assert httpx.post(f"{sim.url}/perplexity/v1/chat/completions", json={}).status_code == 404


# --- rate limits and faults --------------------------------------------------------------------


def clear_of_a_window_edge(margin_s: float = 15.0) -> None:
    """Start at least ``margin_s`` before the next minute: the simulator counts in fixed 60 s windows
    aligned on the minute (``simulator/limits.py``), so requests that straddle an edge see the counts
    start afresh (the cause of a CI failure: the third request of an rpm-2 limit was admitted)."""
    into_minute = time.time() % 60
    if into_minute > 60 - margin_s:
        time.sleep(60 - into_minute + 0.05)


def test_rate_limit_headers_count_down_and_limits_bite(sim: BackgroundServer) -> None:
    clear_of_a_window_edge()
    raw = oai(sim, "openai").chat.completions.with_raw_response
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    remaining = [
        int(raw.create(model="gpt-4o-mini", messages=messages).headers["x-ratelimit-remaining-requests"])
        for _ in range(3)
    ]
    assert remaining[0] - 2 == remaining[1] - 1 == remaining[2]

    assert admin(sim, "limits/anthropic", {"rpm": 2}).json() == {
        "anthropic": {"rpm": 2, "tpm": 1_000_000_000}
    }
    client = claude(sim)
    heads = [
        client.messages.with_raw_response.create(
            model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        ).headers
        for _ in range(2)
    ]
    assert [h["anthropic-ratelimit-requests-remaining"] for h in heads] == ["1", "0"]
    assert heads[0]["anthropic-ratelimit-requests-reset"].endswith("Z")
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]

    admin(sim, "limits/gemini", {"tpm": 5}).raise_for_status()
    google = gemini(sim)
    with pytest.raises(genai_errors.ClientError) as exhausted:
        google.models.generate_content(model=GEMINI, contents="a long enough prompt to spend tokens")
    assert exhausted.value.code == 429 and exhausted.value.status == "RESOURCE_EXHAUSTED"
    [quota, retry] = exhausted.value.details["error"]["details"]
    assert retry["@type"].endswith("RetryInfo") and retry["retryDelay"].endswith("s")
    # The quota hit is the model's, as Gemini's per-project-per-model quotas are named.
    assert quota["@type"].endswith("QuotaFailure")
    [violation] = quota["violations"]
    assert violation["quotaId"] == "GenerateContentInputTokensPerModelPerMinute"
    assert violation["quotaDimensions"]["model"] == GEMINI


def test_admin_validation(sim: BackgroundServer) -> None:
    bad_share = admin(sim, "faults/openai", {"rate_429": 1.5})
    assert bad_share.status_code == 400 and bad_share.json()["error"]["field"] == "rate_429"
    assert admin(sim, "faults/openai", {"rate_4299": 0.1}).json()["error"]["field"] == "rate_4299"
    assert admin(sim, "faults/openai", {"rate_429": 0.7, "rate_5xx": 0.7}).status_code == 400
    assert admin(sim, "limits/openai", {"rpm": 0}).json()["error"]["field"] == "rpm"
    assert admin(sim, "limits/nobody", {"rpm": 5}).status_code == 404
    assert httpx.put(f"{sim.url}/admin/faults/openai", content=b"{").status_code == 400
    assert admin(sim, "faults/grok", {"slow_ttft_ms": 10}).status_code == 200
    assert httpx.get(f"{sim.url}/admin/faults").json()["grok"]["slow_ttft_ms"] == 10


def test_truth_covers_every_arm_with_different_winners(sim: BackgroundServer) -> None:
    truth = httpx.get(f"{sim.url}/admin/truth").json()
    arms = {f"{p}/{m}" for p, spec in CATALOG.providers.items() for m in spec.models}
    assert set(truth) == arms
    tasks = set(next(iter(truth.values())))
    assert {"chat", "code", "summarize", "extract", "reasoning"} <= tasks
    assert all(0 <= q <= 1 for row in truth.values() for q in row.values())
    winners = {max(truth, key=lambda arm: truth[arm][task]) for task in tasks}
    assert len(winners) >= 3


def test_truth_for_a_task_is_set_checked_and_restored(sim: BackgroundServer) -> None:
    built_in = httpx.get(f"{sim.url}/admin/truth").json()
    try:
        changed = httpx.put(f"{sim.url}/admin/truth/reasoning", json={"grok/grok-3-mini": 0.1})
        assert changed.status_code == 200 and changed.json()["grok/grok-3-mini"] == 0.1
        truth = httpx.get(f"{sim.url}/admin/truth").json()
        assert truth["grok/grok-3-mini"] == built_in["grok/grok-3-mini"] | {"reasoning": 0.1}
        assert {arm: row for arm, row in truth.items() if arm != "grok/grok-3-mini"} == {
            arm: row for arm, row in built_in.items() if arm != "grok/grok-3-mini"
        }
        poetry = httpx.put(f"{sim.url}/admin/truth/poetry", json={"openai/gpt-4o": 0.9}).json()
        assert poetry["openai/gpt-4o"] == 0.9 and poetry["venice/llama-3.3-70b"] == 0.6
        unknown = httpx.put(f"{sim.url}/admin/truth/chat", json={"openai/gpt-9": 0.5})
        assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "openai/gpt-9"
        out_of_range = httpx.put(f"{sim.url}/admin/truth/chat", json={"openai/gpt-4o": 1.5})
        assert out_of_range.status_code == 400 and out_of_range.json()["error"]["field"] == "openai/gpt-4o"
        assert httpx.put(f"{sim.url}/admin/truth/chat", json={}).status_code == 400
        assert httpx.put(f"{sim.url}/admin/truth/chat", json={"openai/gpt-4o": "high"}).status_code == 400
    finally:
        restored = httpx.delete(f"{sim.url}/admin/truth")
    assert restored.status_code == 200 and restored.json() == built_in


async def _statuses(url: str, headers: dict[str, str], body: dict[str, Any], n: int) -> list[int]:
    # n requests share the client's 100 pooled connections: waiting for one is not the simulator's time,
    # so it has no limit (a loaded machine made 400 requests wait past 10 s for the pool).
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, pool=None)) as client:
        answers = await asyncio.gather(*(client.post(url, headers=headers, json=body) for _ in range(n)))
    return [answer.status_code for answer in answers]


def test_fault_shares_follow_the_settings(sim: BackgroundServer) -> None:
    admin(sim, "faults/anthropic", {"rate_429": 0.3, "rate_5xx": 0.1}).raise_for_status()
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    body = {"model": CLAUDE, "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    statuses = asyncio.run(_statuses(f"{sim.url}/anthropic/v1/messages", headers, body, 400))
    share_429 = statuses.count(429) / len(statuses)
    share_5xx = sum(status in (500, 529) for status in statuses) / len(statuses)
    assert 0.22 < share_429 < 0.38 and 0.05 < share_5xx < 0.16
    assert set(statuses) <= {200, 429, 500, 529}

    admin(sim, "faults/openai", {"rate_5xx": 1.0}).raise_for_status()
    with pytest.raises(openai.InternalServerError) as failed:
        oai(sim, "openai").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert failed.value.status_code in (500, 502, 503)
    assert "x-ratelimit-remaining-requests" in failed.value.response.headers
    admin(sim, "faults/openai", {"rate_429": 1.0}).raise_for_status()
    with pytest.raises(openai.RateLimitError) as limited:
        oai(sim, "openai").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert limited.value.response.headers["retry-after"] == "1"


def test_slow_first_token_and_hang(sim: BackgroundServer) -> None:
    admin(sim, "faults/venice", {"slow_ttft_ms": 600}).raise_for_status()
    started = monotonic()
    stream = oai(sim, "venice").chat.completions.create(
        model="llama-3.3-70b", messages=[{"role": "user", "content": "x"}], stream=True
    )
    next(iter(stream))
    assert monotonic() - started >= 0.6
    stream.close()

    admin(sim, "faults/deepseek", {"hang_rate": 1.0}).raise_for_status()
    hung = openai.OpenAI(base_url=base(sim, "deepseek"), api_key="k", max_retries=0, timeout=0.5)
    started = monotonic()
    with pytest.raises(openai.APITimeoutError):
        hung.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "x"}])
    assert 0.5 <= monotonic() - started < 2
    httpx.delete(f"{sim.url}/admin/faults").raise_for_status()
    assert (
        oai(sim, "deepseek")
        .chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "x"}])
        .choices
    )
