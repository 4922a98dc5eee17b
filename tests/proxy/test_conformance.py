"""Conformance: the official openai and anthropic SDKs against the proxy, every provider behind each format.

Each case pins one provider's model, so the request crosses that provider's real wire
format (simulated) and comes back in the format the SDK speaks: whole and streamed,
a tool call round trip, usage that matches what was sent, and the SDK's own error
types. A provider that cannot call tools (Perplexity's sonar) must refuse with a 400
that says so, never drop the tools.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import openai
import pytest

from symphony.catalog import load_catalog
from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack

CATALOG = load_catalog()
ARMS = [f"{provider}/{next(iter(spec.models))}" for provider, spec in CATALOG.providers.items()]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def can_call_tools(arm: str) -> bool:
    provider, model = arm.split("/", 1)
    return "tools" in CATALOG.arm(provider, model).capabilities


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyStack]:
    server = RedisServer(port=0, data_dir=tmp_path_factory.mktemp("redis"), persist=False).start()
    try:
        with ProxyStack(server) as running:
            yield running
    finally:
        server.stop()


@pytest.fixture(scope="module")
def oai(stack: ProxyStack) -> openai.OpenAI:
    return stack.openai()


@pytest.fixture(scope="module")
def claude(stack: ProxyStack) -> anthropic.Anthropic:
    return stack.anthropic()


@pytest.mark.parametrize("arm", ARMS)
def test_openai_sdk_whole_and_streamed(oai: openai.OpenAI, arm: str) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Describe the sea."},
    ]
    raw = oai.chat.completions.with_raw_response.create(model=arm, messages=messages, max_tokens=20)
    whole = raw.parse()
    assert raw.headers["x-symphony-arm"] == arm
    text = whole.choices[0].message.content or ""
    assert whole.usage is not None and whole.usage.completion_tokens == len(text.split()) > 0
    assert whole.usage.prompt_tokens > 0 and whole.choices[0].finish_reason in ("stop", "length")

    chunks = list(
        oai.chat.completions.create(
            model=arm, messages=messages, max_tokens=20, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == len(streamed.split()) > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


@pytest.mark.parametrize("arm", ARMS)
def test_anthropic_sdk_whole_and_streamed(claude: anthropic.Anthropic, arm: str) -> None:
    message = claude.messages.create(
        model=arm,
        max_tokens=20,
        system="Be brief.",
        messages=[{"role": "user", "content": "Describe the sea."}],
    )
    text = "".join(block.text for block in message.content if block.type == "text")
    assert message.usage.output_tokens == len(text.split()) > 0
    assert message.stop_reason in ("end_turn", "max_tokens")
    with claude.messages.stream(
        model=arm, max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.usage.output_tokens == len(streamed.split()) > 0


@pytest.mark.parametrize("arm", ARMS)
def test_openai_sdk_tool_call_round_trip(oai: openai.OpenAI, arm: str) -> None:
    ask: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "Use get_weather for Lisbon."}
    ]
    tools: list[openai.types.chat.ChatCompletionToolParam] = [{"type": "function", "function": WEATHER}]
    if not can_call_tools(arm):
        with pytest.raises(openai.BadRequestError) as refused:
            oai.chat.completions.create(model=arm, messages=ask, tools=tools, max_tokens=30)
        assert "tools" in refused.value.message.lower()
        return
    first = oai.chat.completions.create(model=arm, messages=ask, tools=tools, max_tokens=30)
    call = (first.choices[0].message.tool_calls or [None])[0]
    assert call is not None and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert "city" in json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert first.choices[0].finish_reason == "tool_calls"
    follow_up: list[openai.types.chat.ChatCompletionMessageParam] = [
        *ask,
        {"role": "assistant", "tool_calls": [call.model_dump()]},  # type: ignore[union-attr,list-item]
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'},  # type: ignore[union-attr]
    ]
    second = oai.chat.completions.create(model=arm, messages=follow_up, tools=tools, max_tokens=30)
    assert second.choices[0].message.content and second.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("arm", ARMS)
def test_anthropic_sdk_tool_call_round_trip(claude: anthropic.Anthropic, arm: str) -> None:
    tool: anthropic.types.ToolParam = {
        "name": WEATHER["name"],
        "description": WEATHER["description"],
        "input_schema": WEATHER["parameters"],
    }
    ask: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Use get_weather for Lisbon."}]
    if not can_call_tools(arm):
        with pytest.raises(anthropic.BadRequestError):
            claude.messages.create(model=arm, max_tokens=30, tools=[tool], messages=ask)
        return
    first = claude.messages.create(model=arm, max_tokens=30, tools=[tool], messages=ask)
    use = next(block for block in first.content if block.type == "tool_use")
    assert use.name == "get_weather" and "city" in use.input and first.stop_reason == "tool_use"
    second = claude.messages.create(
        model=arm,
        max_tokens=30,
        tools=[tool],
        messages=[
            *ask,
            {"role": "assistant", "content": first.content},  # as Anthropic's docs pass a turn back
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C"}]},
        ],
    )
    assert any(block.type == "text" for block in second.content) and second.stop_reason in (
        "end_turn",
        "max_tokens",
    )


def test_error_types_are_each_sdks_own(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="auto", messages=[{"role": "robot", "content": "x"}])  # type: ignore[misc,list-item]
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(
            model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="auto", max_tokens=0, messages=[{"role": "user", "content": "x"}])
