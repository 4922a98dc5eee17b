"""Provider adapters: request mapping, answers, streams, failures, rate limits, the registry.

Golden expectations are written out in full. Stream translators are fed whole,
byte by byte and in odd splits, and must produce the same events each way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from proxy.adapters.base import StreamTranslator, UnsupportedFeature
from proxy.adapters.features import check_capabilities, required_capabilities
from proxy.adapters.openai_compat import OpenAICompatAdapter, SseRelay, exhausted_reset_s
from proxy.adapters.registry import SIMULATOR_KEY, build_adapters
from proxy.adapters.sse import DONE, SseEvent, SseParser
from symphony.catalog import load_catalog
from symphony.settings import Settings

CATALOG = load_catalog()
CAPABILITIES = {
    provider: {model: price.capabilities for model, price in spec.models.items()}
    for provider, spec in CATALOG.providers.items()
}
IMAGE_DATA_URL = "data:image/png;base64,iVBORw0KGgo="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def splits(data: bytes) -> Iterator[list[bytes]]:
    """The same bytes whole, byte by byte, and in odd-sized pieces."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for size in (2, 3, 7, 13):
        yield [data[i : i + size] for i in range(0, len(data), size)]


def run(translator: StreamTranslator, pieces: list[bytes]) -> bytes:
    return b"".join(translator.feed(piece) for piece in pieces) + translator.flush()


def chunks_of(sse: bytes) -> list[Any]:
    """The JSON payloads of an OpenAI-format SSE stream; ``"[DONE]"`` for the terminator."""
    parser = SseParser()
    events = parser.feed(sse) + parser.flush()
    return [event.data.decode() if event.data == b"[DONE]" else orjson.loads(event.data) for event in events]


def openai_adapter(provider: str) -> OpenAICompatAdapter:
    return OpenAICompatAdapter(
        provider, "https://up.example/v1/", "sk-test", capabilities=CAPABILITIES[provider]
    )


# --- features -----------------------------------------------------------------------------------


def test_plain_chat_needs_nothing() -> None:
    assert (
        required_capabilities({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}) == set()
    )


def test_required_capabilities_names_every_feature() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE_DATA_URL}}]},
            {
                "role": "user",
                "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}],
            },
            {"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]},
        ],
        "tools": [WEATHER_TOOL],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "logprobs": True,
        "n": 2,
        "stop": ["\n"],
    }
    assert required_capabilities(body) == {
        "vision",
        "audio",
        "files",
        "tools",
        "json_schema",
        "logprobs",
        "multiple_choices",
        "stop",
    }


def test_tool_history_needs_tools_even_without_definitions() -> None:
    messages = [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c", "content": "sunny"},
    ]
    assert required_capabilities({"messages": messages}) == {"tools"}
    assert required_capabilities({"messages": [], "response_format": {"type": "text"}, "n": 1}) == set()


def test_check_capabilities_names_the_first_missing_feature() -> None:
    body = {"messages": [], "tools": [WEATHER_TOOL], "stop": "x"}
    with pytest.raises(UnsupportedFeature) as refused:
        check_capabilities("perplexity", frozenset({"json_schema"}), body)
    assert refused.value.param == "tools"
    assert "tool calling" in str(refused.value) and "perplexity" in str(refused.value)
    check_capabilities("openai", CAPABILITIES["openai"]["gpt-4o"], body)


# --- registry -----------------------------------------------------------------------------------


def test_registry_picks_keyed_then_simulated_providers() -> None:
    settings = Settings(simulated_providers="deepseek,grok", sim_url="http://sim:9")
    adapters = build_adapters(CATALOG, settings, {"openai": SecretStr("sk-real"), "grok": SecretStr("xai")})
    assert set(adapters) == {"openai", "grok", "deepseek"}
    assert adapters["openai"].base_url == "https://api.openai.com/v1"
    assert adapters["grok"].base_url == "https://api.x.ai/v1"  # a real key wins over the simulator
    assert adapters["deepseek"].base_url == "http://sim:9/deepseek/v1"
    assert all(isinstance(adapter, OpenAICompatAdapter) for adapter in adapters.values())
    hello = {"messages": [{"role": "user", "content": "hi"}]}
    assert adapters["deepseek"].request(hello, "deepseek-chat", stream=False).headers["authorization"] == (
        f"Bearer {SIMULATOR_KEY}"
    )
    assert (
        adapters["grok"].request(hello, "grok-3-mini", stream=False).headers["authorization"] == "Bearer xai"
    )


def test_registry_without_keys_or_simulator_is_empty() -> None:
    assert build_adapters(CATALOG, Settings(simulated_providers="none"), {}) == {}


# --- SSE parsing --------------------------------------------------------------------------------


def test_sse_parser_tolerates_crlf_comments_and_splits() -> None:
    stream = (
        b": keep-alive\r\n\r\nevent: ping\r\ndata: {}\r\n\r\n"
        b'event: message_delta\ndata: {"a":\ndata: 1}\n\n'
        b"event: bare\rdata: x\r\r"
        b"data: tail-without-blank-line"
    )
    expected = [
        SseEvent("ping", b"{}"),
        SseEvent("message_delta", b'{"a":\n1}'),
        SseEvent("bare", b"x"),
        SseEvent("message", b"tail-without-blank-line"),
    ]
    for pieces in splits(stream):
        parser = SseParser()
        events = [event for piece in pieces for event in parser.feed(piece)] + parser.flush()
        assert events == expected, pieces


# --- OpenAI-compatible --------------------------------------------------------------------------


def test_openai_request_sets_model_auth_and_forces_usage_chunk() -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "model": "auto",
        "temperature": 0.3,
        "top_p": 0.9,
    }
    request = openai_adapter("openai").request(body, "gpt-4o", stream=True)
    assert request.url == "https://up.example/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["content-type"] == "application/json"
    assert orjson.loads(request.body) == {
        "messages": [{"role": "user", "content": "hi"}],
        "model": "gpt-4o",
        "temperature": 0.3,
        "top_p": 0.9,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert body["model"] == "auto"  # the caller's body is not changed


def test_openai_request_passes_every_feature_through() -> None:
    body = {
        "messages": [
            {"role": "developer", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what?"},
                    {"type": "image_url", "image_url": {"url": IMAGE_DATA_URL}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "stop": ["END"],
        "max_completion_tokens": 50,
        "temperature": 0.1,
        "top_p": 0.5,
        "stream_options": {"include_usage": False},
    }
    sent = orjson.loads(openai_adapter("openai").request(body, "gpt-4o", stream=False).body)
    # stream_options is only allowed on streams; everything else goes out as it came.
    expected = {key: value for key, value in body.items() if key != "stream_options"}
    assert sent == {**expected, "model": "gpt-4o", "stream": False}


def test_deepseek_quirks_and_refusals() -> None:
    adapter = openai_adapter("deepseek")
    body = {
        "messages": [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "hi"}],
        "max_completion_tokens": 50,
    }
    sent = orjson.loads(adapter.request(body, "deepseek-chat", stream=False).body)
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."}
    assert sent["max_tokens"] == 50 and "max_completion_tokens" not in sent
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": IMAGE_DATA_URL}}]}
    with pytest.raises(UnsupportedFeature) as refused:
        adapter.request({"messages": [image]}, "deepseek-chat", stream=False)
    assert refused.value.param == "messages" and "image input" in str(refused.value)


def test_perplexity_refuses_tools_and_json_mode() -> None:
    adapter = openai_adapter("perplexity")
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(UnsupportedFeature, match="tool calling"):
        adapter.request({"messages": messages, "tools": [WEATHER_TOOL]}, "sonar", stream=False)
    with pytest.raises(UnsupportedFeature, match="json_object"):
        adapter.request(
            {"messages": messages, "response_format": {"type": "json_object"}}, "sonar", stream=False
        )
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    sent = orjson.loads(
        adapter.request({"messages": messages, "response_format": schema}, "sonar", stream=False).body
    )
    assert sent["response_format"] == schema


def test_openai_response_passes_bytes_and_reads_usage() -> None:
    body = (
        b'{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11},'
        b'"citations":["https://a.example"]}'
    )
    answer = openai_adapter("perplexity").response(body)
    assert answer.body is body
    assert (answer.input_tokens, answer.output_tokens) == (9, 2)
    assert openai_adapter("openai").response(b"not json").output_tokens == 0


def _openai_stream(with_usage_chunk: bool, done: bool = True) -> bytes:
    head = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    frames = [
        head + '"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}],"usage":null}',
        head + '"choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}',
        head + '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}',
    ]
    if with_usage_chunk:
        frames.append(
            head + '"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
        )
    sse = b"".join(b"data: " + frame.encode() + b"\n\n" for frame in frames)
    return sse + (DONE if done else b"")


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_stream_relay_drops_usage_chunk_unless_asked(include_usage: bool) -> None:
    for pieces in splits(_openai_stream(with_usage_chunk=True)):
        relay = openai_adapter("openai").stream("gpt-4o", include_usage=include_usage)
        out = run(relay, pieces)
        assert (relay.input_tokens, relay.output_tokens) == (5, 1)
        expected = _openai_stream(with_usage_chunk=include_usage)
        assert out == expected


def test_openai_stream_relay_ends_a_truncated_stream_with_done() -> None:
    stream = _openai_stream(with_usage_chunk=False, done=False)
    relay = SseRelay(forward_usage=False)
    assert run(relay, [stream[:-2]]) == stream + DONE
    relay = SseRelay(forward_usage=False)
    assert run(relay, [stream + b"data: [DONE]"]) == stream + DONE


def test_openai_failure_passes_error_bodies_and_retry_after() -> None:
    adapter = openai_adapter("openai")
    error = b'{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit"}}'
    headers = {
        "retry-after": "2",
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
        "content-type": "application/json",
    }
    failure = adapter.failure(429, headers, error)
    assert (failure.status, failure.http_status, failure.retry_after_s, failure.body) == (
        "429",
        429,
        2.0,
        error,
    )
    assert failure.rate_limit == {
        "retry-after": "2",
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
    }
    # Without retry-after, the reset of the exhausted budget tells when to retry.
    no_retry = {**headers, "x-ratelimit-reset-requests": "6m0s"}
    del no_retry["retry-after"]
    assert adapter.failure(429, no_retry, error).retry_after_s == 360.0
    html = adapter.failure(502, {}, b"<html>Bad gateway</html>")
    assert html.status == "5xx"
    assert orjson.loads(html.body)["error"]["type"] == "api_error"
    assert "Bad gateway" in orjson.loads(html.body)["error"]["message"]
    assert adapter.failure(400, {}, b"").status == "error"


@pytest.mark.parametrize(
    ("remaining", "reset", "expected"),
    [("0", "20ms", 0.02), ("0", "1h2m3.5s", 3723.5), ("3", "1s", None), ("0", "soon", None)],
)
def test_exhausted_reset(remaining: str, reset: str, expected: float | None) -> None:
    headers = {"x-ratelimit-remaining-tokens": remaining, "x-ratelimit-reset-tokens": reset}
    assert exhausted_reset_s(headers) == (pytest.approx(expected) if expected is not None else None)
