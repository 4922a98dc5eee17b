"""Provider adapters: request mapping, answers, streams, failures, rate limits, the registry.

Golden expectations are written out in full. Stream translators are fed whole,
byte by byte and in odd splits, and must produce the same events each way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import SecretStr

from proxy.adapters.anthropic import AnthropicAdapter
from proxy.adapters.base import (
    Adapter,
    Answer,
    StreamTranslator,
    UnsupportedFeature,
    UpstreamFailure,
    UpstreamRequest,
)
from proxy.adapters.failures import MalformedAnswer
from proxy.adapters.features import check_capabilities, required_capabilities
from proxy.adapters.gemini import GeminiAdapter
from proxy.adapters.openai_compat import OpenAICompatAdapter, SseRelay, exhausted_reset_s
from proxy.adapters.registry import SIMULATOR_KEY, build_adapters
from proxy.adapters.sse import DONE, SseEvent, SseParser
from simulator import BackgroundServer
from simulator import create_app as create_sim_app
from simulator.generation import count_input_tokens
from symphony.catalog import Catalog, load_catalog
from symphony.clock import RealClock
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


NO_CATALOG = {
    "anthropic": AnthropicAdapter("anthropic", "https://api.anthropic.com/v1", "ak"),
    "gemini": GeminiAdapter("gemini", "https://g.example/v1beta", "gk"),
}


@pytest.mark.parametrize(
    ("provider", "extra", "param", "feature"),
    [
        ("anthropic", {"n": 2}, "n", "several choices per request (n > 1)"),
        ("anthropic", {"seed": 7}, "seed", "the `seed` parameter"),
        ("anthropic", {"reasoning_effort": "high"}, "reasoning_effort", "the `reasoning_effort` parameter"),
        ("gemini", {"n": 3}, "n", "several choices per request (n > 1)"),
        ("gemini", {"logit_bias": {"1": 2}}, "logit_bias", "the `logit_bias` parameter"),
        ("gemini", {"functions": [{"name": "f"}]}, "functions", "the `functions` parameter"),
    ],
)
def test_the_base_class_refuses_what_a_wire_format_cannot_carry_without_a_catalog(
    provider: str, extra: dict[str, Any], param: str, feature: str
) -> None:
    """``Adapter.request`` applies the declared refusals even when no catalog narrows the models."""
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(UnsupportedFeature) as refused:
        NO_CATALOG[provider].request(body, "some-model", stream=False)
    assert refused.value.param == param
    assert (
        str(refused.value)
        == f"{provider} cannot serve this request: {feature} is not supported by {provider}."
    )


def test_the_openai_format_passes_every_parameter_without_a_catalog() -> None:
    adapter = OpenAICompatAdapter("openai", "https://api.openai.com/v1", "sk")
    body = {"messages": [{"role": "user", "content": "hi"}], "n": 2, "seed": 7, "reasoning_effort": "high"}
    sent = orjson.loads(adapter.request(body, "gpt-4o", stream=False).body)
    assert (sent["n"], sent["seed"], sent["reasoning_effort"]) == (2, 7, "high")


# --- registry -----------------------------------------------------------------------------------


def test_registry_picks_keyed_then_simulated_providers() -> None:
    settings = Settings(simulated_providers="deepseek,grok", sim_url="http://sim:9")
    adapters = build_adapters(CATALOG, settings, {"openai": SecretStr("sk-real"), "grok": SecretStr("xai")})
    assert set(adapters) == {"openai", "grok", "deepseek"}
    assert adapters["openai"].base_url == "https://api.openai.com/v1"
    assert adapters["grok"].base_url == "http://sim:9/grok/v1"  # simulated, with its real key
    assert adapters["deepseek"].base_url == "http://sim:9/deepseek/v1"
    assert all(isinstance(adapter, OpenAICompatAdapter) for adapter in adapters.values())
    hello = {"messages": [{"role": "user", "content": "hi"}]}
    assert adapters["deepseek"].request(hello, "deepseek-chat", stream=False).headers["authorization"] == (
        f"Bearer {SIMULATOR_KEY}"
    )
    assert (
        adapters["grok"].request(hello, "grok-3-mini", stream=False).headers["authorization"] == "Bearer xai"
    )


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
    assert failure.model_limit_used_up  # remaining-requests 0: the model's limit, to be cooled
    assert not adapter.failure(
        429, {**headers, "x-ratelimit-remaining-requests": "4"}, error
    ).model_limit_used_up
    assert not adapter.failure(503, headers, error).model_limit_used_up
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


# --- Anthropic ----------------------------------------------------------------------------------

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url", "image_url": {"url": IMAGE_DATA_URL, "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://img.example/a.jpg"}},
        ],
    },
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "snow"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "sun"}]},
    {"role": "user", "content": "Summarise."},
]


def anthropic_adapter() -> AnthropicAdapter:
    return AnthropicAdapter(
        "anthropic", "https://api.anthropic.com/v1", "ak", capabilities=CAPABILITIES["anthropic"]
    )


def anthropic_request(
    body: dict[str, Any], model: str = "claude-3-5-haiku-latest", stream: bool = False
) -> tuple[UpstreamRequest, Any]:
    request = anthropic_adapter().request(body, model, stream=stream)
    return request, orjson.loads(request.body)


def test_anthropic_request_golden() -> None:
    body = {
        "model": "auto",
        "messages": CONVERSATION,
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_completion_tokens": 300,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": "END",
        "stream_options": {"include_usage": True},
        "user": "u-1",
    }
    request, sent = anthropic_request(body, stream=True)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == "ak"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert sent == {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 300,
        "system": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Answer in English."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://img.example/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "snow"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "sun"},
                    {"type": "text", "text": "Summarise."},
                ],
            },
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stream": True,
    }


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        (None, None),
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_anthropic_tool_choice(tool_choice: Any, expected: Any) -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": tool_choice,
    }
    _, sent = anthropic_request(body)
    assert sent.get("tool_choice") == expected
    assert sent["max_tokens"] == 4096  # Anthropic requires one; the default when the client sets none


def test_anthropic_emulates_json_mode_with_a_forced_tool() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    body = {
        "messages": [{"role": "user", "content": "Where?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    }
    _, sent = anthropic_request(body)
    assert sent["tools"] == [
        {
            "name": "symphony_json_answer",
            "description": "Give your whole answer through this tool (place).",
            "input_schema": schema,
        }
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "symphony_json_answer"}
    _, sent = anthropic_request({**body, "response_format": {"type": "json_object"}})
    assert sent["tools"][0]["input_schema"] == {"type": "object"}
    _, sent = anthropic_request({**body, "response_format": {"type": "text"}})
    assert "tools" not in sent


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"seed": 7}, "seed"),
        ({"temperature": 1.5}, "temperature"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"tools": [WEATHER_TOOL], "response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}
                ]
            },
            "messages",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            },
            "messages",
        ),
    ],
)
def test_anthropic_refuses_what_it_cannot_serve(extra: dict[str, Any], param: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(UnsupportedFeature) as refused:
        anthropic_adapter().request(body, "claude-3-5-haiku-latest", stream=False)
    assert refused.value.param == param


def test_anthropic_sonnet_takes_temperature_or_top_p_not_both() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "top_p": 0.5}
    with pytest.raises(UnsupportedFeature, match="both temperature and top_p"):
        anthropic_adapter().request(body, "claude-sonnet-4-5", stream=False)
    anthropic_adapter().request(body, "claude-3-5-haiku-latest", stream=False)


def _anthropic_message(content: list[dict[str, Any]], stop_reason: str) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-20241022",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 5},
        }
    )


def test_anthropic_response_golden() -> None:
    body = _anthropic_message(
        [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        "tool_use",
    )
    answer = anthropic_adapter().response(body)
    assert (answer.input_tokens, answer.output_tokens) == (25, 7)
    completion = orjson.loads(answer.body)
    assert isinstance(completion.pop("created"), int)
    assert completion == {
        "id": "msg_01",
        "object": "chat.completion",
        "model": "claude-3-5-haiku-20241022",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 25, "completion_tokens": 7, "total_tokens": 32},
    }
    ChatCompletion.model_validate_json(answer.body)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ],
)
def test_anthropic_finish_reasons(stop_reason: str, finish: str) -> None:
    answer = anthropic_adapter().response(_anthropic_message([{"type": "text", "text": "x"}], stop_reason))
    assert orjson.loads(answer.body)["choices"][0]["finish_reason"] == finish


def test_anthropic_json_emulation_answers_as_text() -> None:
    body = _anthropic_message(
        [{"type": "tool_use", "id": "toolu_1", "name": "symphony_json_answer", "input": {"city": "Oslo"}}],
        "tool_use",
    )
    message = orjson.loads(anthropic_adapter().response(body).body)["choices"][0]
    assert message["finish_reason"] == "stop"
    assert orjson.loads(message["message"]["content"]) == {"city": "Oslo"}
    assert "tool_calls" not in message["message"]


def test_anthropic_malformed_answer_is_an_error() -> None:
    with pytest.raises(MalformedAnswer):
        anthropic_adapter().response(b'{"type":"error"}')


def _anthropic_sse(events: list[dict[str, Any]], line_end: bytes = b"\n") -> bytes:
    out = b""
    for event in events:
        out += (
            b"event: "
            + event["type"].encode()
            + line_end
            + b"data: "
            + orjson.dumps(event)
            + line_end
            + line_end
        )
    return out


ANTHROPIC_STREAM_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_9",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-haiku-20241022",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Héllo"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    },
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 30},
    },
    {"type": "message_stop"},
]


def _deltas(chunks: list[Any]) -> list[Any]:
    """(kind, value) per chunk, for golden comparisons that ignore ids and timestamps."""
    out: list[Any] = []
    for chunk in chunks:
        if chunk == "[DONE]":
            out.append(("done", None))
        elif not chunk["choices"]:
            out.append(("usage", chunk["usage"]))
        else:
            choice = chunk["choices"][0]
            out.append(
                ("finish", choice["finish_reason"]) if choice["finish_reason"] else ("delta", choice["delta"])
            )
    return out


ANTHROPIC_STREAM_EXPECTED: list[Any] = [
    ("delta", {"role": "assistant", "content": ""}),
    ("delta", {"content": "Héllo"}),
    ("delta", {"content": " there"}),
    (
        "delta",
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
    ),
    ("delta", {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    ("delta", {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
    (
        "delta",
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        },
    ),
    ("delta", {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
    ("finish", "tool_calls"),
]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_anthropic_stream_golden_in_any_split(line_end: bytes, include_usage: bool) -> None:
    stream = _anthropic_sse(ANTHROPIC_STREAM_EVENTS, line_end)
    usage = (
        [("usage", {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42})]
        if include_usage
        else []
    )
    for pieces in splits(stream):
        translator = anthropic_adapter().stream("claude-3-5-haiku-latest", include_usage=include_usage)
        chunks = chunks_of(run(translator, pieces))
        assert _deltas(chunks) == [*ANTHROPIC_STREAM_EXPECTED, *usage, ("done", None)]
        assert (translator.input_tokens, translator.output_tokens) == (12, 30)
        for chunk in chunks[:-1]:
            ChatCompletionChunk.model_validate(chunk)
        assert {chunk["id"] for chunk in chunks[:-1]} == {"msg_9"}


def test_anthropic_stream_json_emulation_streams_content() -> None:
    events = [
        ANTHROPIC_STREAM_EVENTS[0],
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "symphony_json_answer", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": " 1}"},
        },
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    ]
    translator = anthropic_adapter().stream("claude-3-5-haiku-latest", include_usage=False)
    assert _deltas(chunks_of(run(translator, [_anthropic_sse(events)]))) == [
        ("delta", {"role": "assistant", "content": ""}),
        ("delta", {"content": '{"a":'}),
        ("delta", {"content": " 1}"}),
        ("finish", "stop"),
        ("done", None),
    ]


def test_anthropic_stream_error_event_becomes_an_openai_error_chunk() -> None:
    events = [
        ANTHROPIC_STREAM_EVENTS[0],
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    translator = anthropic_adapter().stream("claude-3-5-haiku-latest", include_usage=True)
    chunks = chunks_of(run(translator, [_anthropic_sse(events)]))
    assert chunks[-1] == {
        "error": {"message": "Overloaded", "type": "api_error", "param": None, "code": "overloaded_error"}
    }
    assert translator.error == {"type": "overloaded_error", "message": "Overloaded"}


def test_anthropic_failures_and_rate_limits() -> None:
    adapter = anthropic_adapter()
    headers = {
        "retry-after": "7",
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-11-26T19:00:07Z",
        "anthropic-ratelimit-input-tokens-remaining": "1000",
        "request-id": "req_1",
    }
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"Too many requests"}}'
    failure = adapter.failure(429, headers, body)
    assert (failure.status, failure.http_status, failure.retry_after_s) == ("429", 429, 7.0)
    assert orjson.loads(failure.body) == {
        "error": {
            "message": "Too many requests",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_error",
        }
    }
    assert set(failure.rate_limit) == {name for name in headers if name != "request-id"}
    overloaded = adapter.failure(
        529, {}, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    )
    assert (overloaded.status, orjson.loads(overloaded.body)["error"]["type"]) == ("5xx", "overloaded_error")
    assert adapter.failure(401, {}, b"nope").status == "error"


# --- Gemini -------------------------------------------------------------------------------------


def gemini_adapter() -> GeminiAdapter:
    return GeminiAdapter("gemini", "https://g.example/v1beta", "gk", capabilities=CAPABILITIES["gemini"])


def gemini_request(body: dict[str, Any], stream: bool = False) -> tuple[UpstreamRequest, Any]:
    request = gemini_adapter().request(body, "gemini-2.5-flash", stream=stream)
    return request, orjson.loads(request.body)


def test_gemini_request_golden() -> None:
    messages = list(CONVERSATION)
    messages[2] = {
        "role": "user",
        "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url", "image_url": {"url": IMAGE_DATA_URL}},
        ],
    }
    body = {
        "messages": messages,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 200,
        "temperature": 1.5,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "seed": 4,
        "response_format": {"type": "text"},
    }
    request, sent = gemini_request(body, stream=True)
    assert request.url == "https://g.example/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert request.headers["x-goog-api-key"] == "gk"
    assert sent == {
        "systemInstruction": {"parts": [{"text": "You are terse."}, {"text": "Answer in English."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather here?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"result": "snow"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"result": "sun"}}},
                    {"text": "Summarise."},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Current weather in a city.",
                        "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {
            "temperature": 1.5,
            "topP": 0.9,
            "seed": 4,
            "maxOutputTokens": 200,
            "stopSequences": ["END", "STOP"],
        },
    }
    assert (
        gemini_adapter()
        .request(body, "gemini-2.5-flash", stream=False)
        .url.endswith("/models/gemini-2.5-flash:generateContent")
    )


def test_gemini_tool_results_pass_json_objects_as_they_are() -> None:
    messages = [
        CONVERSATION[3],
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": -3}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "[1, 2]"},
    ]
    _, sent = gemini_request({"messages": messages})
    assert [part["functionResponse"]["response"] for part in sent["contents"][1]["parts"]] == [
        {"temp": -3},
        {"result": "[1, 2]"},
    ]


@pytest.mark.parametrize(
    ("response_format", "config"),
    [
        ({"type": "json_object"}, {"responseMimeType": "application/json"}),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "p", "schema": {"type": "object", "required": ["a"]}},
            },
            {
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object", "required": ["a"]},
            },
        ),
    ],
)
def test_gemini_json_mode(response_format: dict[str, Any], config: dict[str, Any]) -> None:
    _, sent = gemini_request(
        {"messages": [{"role": "user", "content": "hi"}], "response_format": response_format}
    )
    assert sent["generationConfig"] == config


@pytest.mark.parametrize(("tool_choice", "mode"), [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")])
def test_gemini_tool_choice(tool_choice: str, mode: str) -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": tool_choice,
    }
    _, sent = gemini_request(body)
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 3}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"functions": [{"name": "f"}]}, "functions"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                    }
                ]
            },
            "messages.0.content",
        ),
        (
            {"messages": [{"role": "tool", "tool_call_id": "nobody", "content": "x"}]},
            "messages.0.tool_call_id",
        ),
    ],
)
def test_gemini_refuses_what_it_cannot_serve(extra: dict[str, Any], param: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(UnsupportedFeature) as refused:
        gemini_adapter().request(body, "gemini-2.5-flash", stream=False)
    assert refused.value.param == param


def _gemini_answer(
    parts: list[dict[str, Any]], finish: str | None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    answer: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r-1",
    }
    if usage is not None:
        answer["usageMetadata"] = usage
    return answer


def test_gemini_response_golden() -> None:
    body = _gemini_answer(
        [
            {"text": "thinking...", "thought": True},
            {"text": "Let me "},
            {"text": "check."},
            {"functionCall": {"id": "fc-1", "name": "get_weather", "args": {"city": "Oslo"}}},
        ],
        "STOP",
        {"promptTokenCount": 11, "candidatesTokenCount": 6, "thoughtsTokenCount": 4, "totalTokenCount": 21},
    )
    answer = gemini_adapter().response(orjson.dumps(body))
    assert (answer.input_tokens, answer.output_tokens) == (11, 10)
    completion = orjson.loads(answer.body)
    assert isinstance(completion.pop("created"), int)
    assert completion == {
        "id": "r-1",
        "object": "chat.completion",
        "model": "gemini-2.5-flash",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "fc-1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 10, "total_tokens": 21},
    }
    ChatCompletion.model_validate_json(answer.body)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("OTHER", "stop"),
    ],
)
def test_gemini_finish_reasons(reason: str, finish: str) -> None:
    answer = gemini_adapter().response(orjson.dumps(_gemini_answer([{"text": "x"}], reason)))
    assert orjson.loads(answer.body)["choices"][0]["finish_reason"] == finish


def test_gemini_blocked_prompt_is_a_content_filter_finish() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}
    completion = orjson.loads(gemini_adapter().response(orjson.dumps(body)).body)
    assert completion["choices"][0]["finish_reason"] == "content_filter"
    assert completion["choices"][0]["message"]["content"] is None
    with pytest.raises(MalformedAnswer):
        gemini_adapter().response(b"[]")


def test_gemini_tool_calls_without_ids_get_unique_ones() -> None:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
    body = orjson.dumps(_gemini_answer([call, call], "STOP"))
    calls = orjson.loads(gemini_adapter().response(body).body)["choices"][0]["message"]["tool_calls"]
    assert len({call["id"] for call in calls}) == 2


GEMINI_STREAM_EVENTS = [
    _gemini_answer([{"text": "Hé"}], None, {"promptTokenCount": 9, "candidatesTokenCount": 1}),
    _gemini_answer([{"text": "llo there"}], None, {"promptTokenCount": 9, "candidatesTokenCount": 3}),
    _gemini_answer(
        [{"functionCall": {"id": "fc-1", "name": "get_weather", "args": {"city": "Oslo"}}}],
        "STOP",
        {"promptTokenCount": 9, "candidatesTokenCount": 8, "totalTokenCount": 17},
    ),
]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
@pytest.mark.parametrize("include_usage", [True, False])
def test_gemini_stream_golden_in_any_split(line_end: bytes, include_usage: bool) -> None:
    stream = b"".join(b"data: " + orjson.dumps(event) + line_end + line_end for event in GEMINI_STREAM_EVENTS)
    usage = (
        [("usage", {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17})] if include_usage else []
    )
    for pieces in splits(stream):
        translator = gemini_adapter().stream("gemini-2.5-flash", include_usage=include_usage)
        chunks = chunks_of(run(translator, pieces))
        assert _deltas(chunks) == [
            ("delta", {"role": "assistant", "content": ""}),
            ("delta", {"content": "Hé"}),
            ("delta", {"content": "llo there"}),
            (
                "delta",
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "fc-1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ]
                },
            ),
            ("finish", "tool_calls"),
            *usage,
            ("done", None),
        ]
        assert (translator.input_tokens, translator.output_tokens) == (9, 8)
        for chunk in chunks[:-1]:
            ChatCompletionChunk.model_validate(chunk)
        assert {chunk["id"] for chunk in chunks[:-1]} == {"r-1"}


def test_gemini_stream_error_chunk() -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    translator = gemini_adapter().stream("gemini-2.5-flash", include_usage=False)
    chunks = chunks_of(
        run(
            translator,
            [
                b"data: "
                + orjson.dumps(GEMINI_STREAM_EVENTS[0])
                + b"\n\ndata: "
                + orjson.dumps(error)
                + b"\n\n"
            ],
        )
    )
    assert (
        chunks[-1]["error"]["message"] == "The model is overloaded."
        and chunks[-1]["error"]["code"] == "UNAVAILABLE"
    )
    assert translator.error is not None


def test_gemini_failures() -> None:
    body = orjson.dumps(
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7.5s"},
                ],
            }
        }
    )
    failure = gemini_adapter().failure(429, {"content-type": "application/json"}, body)
    assert (failure.status, failure.retry_after_s, failure.rate_limit) == ("429", 7.5, {})
    assert orjson.loads(failure.body)["error"] == {
        "message": "Resource has been exhausted (e.g. check quota).",
        "type": "rate_limit_error",
        "param": None,
        "code": "RESOURCE_EXHAUSTED",
    }
    assert gemini_adapter().failure(429, {"retry-after": "3"}, b"{}").retry_after_s == 3.0
    assert gemini_adapter().failure(503, {}, b"oops").status == "5xx"


def test_registry_without_keys_or_simulator_is_empty() -> None:
    assert build_adapters(CATALOG, Settings(simulated_providers="none"), {}) == {}
    everything = build_adapters(CATALOG, Settings(simulated_providers="all", sim_url="http://sim:9"), {})
    assert set(everything) == set(CATALOG.providers)
    assert {name: type(adapter).__name__ for name, adapter in everything.items()} == {
        "openai": "OpenAICompatAdapter",
        "anthropic": "AnthropicAdapter",
        "gemini": "GeminiAdapter",
        "perplexity": "OpenAICompatAdapter",
        "venice": "OpenAICompatAdapter",
        "grok": "OpenAICompatAdapter",
        "deepseek": "OpenAICompatAdapter",
    }
    assert everything["venice"].base_url == "http://sim:9/venice/api/v1"


# --- every adapter against the simulator, over real HTTP -----------------------------------------

SYSTEM, QUESTION = "You are terse.", "Which provider should serve this request, and why?"
ROUTE_MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
PROVIDERS = sorted(CATALOG.providers)
OPENAI_WIRE = {name for name, spec in CATALOG.providers.items() if spec.wire == "openai"}


@dataclass
class Live:
    sim: BackgroundServer
    adapters: dict[str, Adapter]
    http: httpx.Client

    def model(self, provider: str) -> str:
        return next(iter(CATALOG.providers[provider].models))

    def can(self, provider: str, capability: str) -> bool:
        return capability in CATALOG.arm(provider, self.model(provider)).capabilities

    def complete(self, provider: str, body: dict[str, Any]) -> tuple[dict[str, Any], Answer]:
        adapter = self.adapters[provider]
        request = adapter.request(body, self.model(provider), stream=False)
        response = self.http.post(request.url, headers=request.headers, content=request.body)
        assert response.status_code == 200, response.text
        answer = adapter.response(response.content)
        ChatCompletion.model_validate_json(answer.body)
        return orjson.loads(answer.body), answer

    def stream(self, provider: str, body: dict[str, Any]) -> tuple[dict[str, Any], StreamTranslator]:
        """The streamed answer assembled as a ``chat.completion`` would be, and its translator."""
        adapter = self.adapters[provider]
        request = adapter.request(body, self.model(provider), stream=True)
        translator = adapter.stream(self.model(provider), include_usage=True)
        with self.http.stream("POST", request.url, headers=request.headers, content=request.body) as response:
            assert response.status_code == 200, response.read()
            sse = b"".join(translator.feed(piece) for piece in response.iter_raw()) + translator.flush()
        return assemble(chunks_of(sse)), translator

    def fail(self, provider: str, body: dict[str, Any]) -> UpstreamFailure:
        adapter = self.adapters[provider]
        request = adapter.request(body, self.model(provider), stream=False)
        response = self.http.post(request.url, headers=request.headers, content=request.body)
        assert response.status_code >= 400
        return adapter.failure(response.status_code, response.headers, response.content)


def assemble(chunks: list[Any]) -> dict[str, Any]:
    """A canonical chunk stream folded into one choice and its usage, checking each chunk's shape."""
    assert chunks[-1] == "[DONE]" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content, finish, usage = "", [], None
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks[:-1]:
        ChatCompletionChunk.model_validate(chunk)
        if not chunk["choices"]:
            usage = chunk["usage"]
            continue
        choice = chunk["choices"][0]
        content += choice["delta"].get("content") or ""
        for call in choice["delta"].get("tool_calls") or []:
            entry = calls.setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
            entry["id"] = call.get("id") or entry["id"]
            entry["name"] = (call.get("function") or {}).get("name") or entry["name"]
            entry["arguments"] += (call.get("function") or {}).get("arguments") or ""
        if choice["finish_reason"]:
            finish.append(choice["finish_reason"])
    assert len(finish) == 1 and chunks[-2]["choices"] == []  # one finish chunk; usage chunk last
    tool_calls = [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for _, c in sorted(calls.items())
    ]
    message = {
        "role": "assistant",
        "content": content or None,
        **({"tool_calls": tool_calls} if calls else {}),
    }
    return {"choices": [{"message": message, "finish_reason": finish[0]}], "usage": usage}


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with BackgroundServer(create_sim_app(RealClock(), CATALOG, seed=11)) as sim:
        adapters = build_adapters(CATALOG, Settings(simulated_providers="all", sim_url=sim.url), {})
        with httpx.Client(timeout=10.0) as http:
            yield Live(sim, adapters, http)


def answer_of(
    live: Live, provider: str, body: dict[str, Any], stream: bool
) -> tuple[dict[str, Any], int, int]:
    """(completion, input tokens, output tokens) as the adapter counted them, streamed or not."""
    if stream:
        completion, translator = live.stream(provider, body)
        return completion, translator.input_tokens, translator.output_tokens
    completion, answer = live.complete(provider, body)
    return completion, answer.input_tokens, answer.output_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_live_text_answer_and_usage(live: Live, provider: str, stream: bool) -> None:
    body = {"messages": ROUTE_MESSAGES, "temperature": 0.7, "top_p": 0.9}
    if provider == "anthropic":
        body.pop("top_p")
    completion, input_tokens, output_tokens = answer_of(live, provider, body, stream)
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "stop"
    text = choice["message"]["content"]
    assert completion["usage"]["completion_tokens"] == output_tokens == len(text.split()) > 0
    assert completion["usage"]["prompt_tokens"] == input_tokens == count_input_tokens([SYSTEM, QUESTION])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_live_tool_call_round_trip(live: Live, provider: str, stream: bool) -> None:
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Use get_weather for Oslo."},
    ]
    body: dict[str, Any] = {"messages": messages, "tools": [WEATHER_TOOL]}
    if not live.can(provider, "tools"):
        with pytest.raises(UnsupportedFeature):
            live.adapters[provider].request(body, live.model(provider), stream=stream)
        return
    completion, _, _ = answer_of(live, provider, body, stream)
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and call["id"]
    assert isinstance(orjson.loads(call["function"]["arguments"])["city"], str)
    # The call and its result go back: the model now answers in text.
    assistant = {"role": "assistant", "content": choice["message"]["content"], "tool_calls": [call]}
    result = {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": -3}'}
    follow_up = {**body, "messages": [*messages, assistant, result]}
    completion, _, _ = answer_of(live, provider, follow_up, stream)
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["choices"][0]["message"]["content"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_live_json_mode(live: Live, provider: str, stream: bool) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
        "required": ["city", "temp_c"],
    }
    if live.can(provider, "json_schema"):
        response_format: dict[str, Any] = {
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": schema},
        }
    else:
        response_format = {"type": "json_object"}
    body = {
        "messages": [{"role": "user", "content": "Weather in Oslo as JSON."}],
        "response_format": response_format,
    }
    completion, _, output_tokens = answer_of(live, provider, body, stream)
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "stop"
    value = orjson.loads(choice["message"]["content"])
    assert isinstance(value, dict)
    if response_format["type"] == "json_schema":
        assert isinstance(value["city"], str) and isinstance(value["temp_c"], int | float)
    assert output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_live_max_tokens_and_stop(live: Live, provider: str, stream: bool) -> None:
    body = {"messages": ROUTE_MESSAGES, "max_tokens": 3}
    completion, _, output_tokens = answer_of(live, provider, body, stream)
    assert completion["choices"][0]["finish_reason"] == "length"
    assert output_tokens == len(completion["choices"][0]["message"]["content"].split()) == 3
    # The answer stops before its first "a" or "e": dropped stop sequences would show both.
    stopped = {"messages": ROUTE_MESSAGES, "stop": ["a", "e"]}
    if not live.can(provider, "stop"):
        with pytest.raises(UnsupportedFeature):
            live.adapters[provider].request(stopped, live.model(provider), stream=stream)
        return
    completion, _, _ = answer_of(live, provider, stopped, stream)
    assert completion["choices"][0]["finish_reason"] == "stop"
    text = completion["choices"][0]["message"]["content"] or ""
    assert "a" not in text and "e" not in text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_live_image_input(live: Live, provider: str) -> None:
    image = {"type": "image_url", "image_url": {"url": IMAGE_DATA_URL}}
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]}
    if not live.can(provider, "vision"):
        with pytest.raises(UnsupportedFeature):
            live.adapters[provider].request(body, live.model(provider), stream=False)
        return
    completion, _ = live.complete(provider, body)
    assert completion["choices"][0]["message"]["content"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_live_failures_map_status_and_retry_after(live: Live, provider: str) -> None:
    body = {"messages": ROUTE_MESSAGES}
    try:
        live.http.put(f"{live.sim.url}/admin/faults/{provider}", json={"rate_429": 1.0}).raise_for_status()
        failure = live.fail(provider, body)
        assert (failure.status, failure.http_status) == ("429", 429)
        assert failure.retry_after_s is not None and failure.retry_after_s > 0
        # OpenAI's wire names a 429's error type after the limit ("requests"); Anthropic and Gemini's do not.
        expected_type = "requests" if provider in OPENAI_WIRE else "rate_limit_error"
        assert orjson.loads(failure.body)["error"]["type"] == expected_type
        live.http.put(f"{live.sim.url}/admin/faults/{provider}", json={"rate_5xx": 1.0}).raise_for_status()
        failure = live.fail(provider, body)
        assert failure.status == "5xx" and failure.http_status >= 500
        assert orjson.loads(failure.body)["error"]["message"]
    finally:
        live.http.delete(f"{live.sim.url}/admin/faults").raise_for_status()
    request = live.adapters[provider].request(body, live.model(provider), stream=False)
    headers = live.http.post(request.url, headers=request.headers, content=request.body).headers
    observed = live.adapters[provider].rate_limits(headers)
    expected_prefix = {"anthropic": "anthropic-ratelimit-", "gemini": None}.get(provider, "x-ratelimit-")
    if expected_prefix is None:
        assert observed == {}
    else:
        assert observed and all(name.startswith(expected_prefix) for name in observed)


def test_top_k_is_mapped_where_it_exists_and_refused_elsewhere() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "top_k": 40}
    assert anthropic_request(body)[1]["top_k"] == 40
    assert gemini_request(body)[1]["generationConfig"] == {"topK": 40}
    assert orjson.loads(openai_adapter("perplexity").request(body, "sonar", stream=False).body)["top_k"] == 40
    with pytest.raises(UnsupportedFeature) as refused:
        openai_adapter("deepseek").request(body, "deepseek-chat", stream=False)
    assert refused.value.param == "top_k"


# --- providers of one's own -----------------------------------------------------------------------

OWN_MODELS = {"m": {"input_per_mtok": 0, "output_per_mtok": 0}}


def _with_own(**providers: dict[str, Any]) -> Catalog:
    data = CATALOG.model_dump(mode="json")
    data["providers"] = {**data["providers"], **providers}
    return Catalog.model_validate(data)


def test_own_providers_get_their_key_as_their_entry_says() -> None:
    catalog = _with_own(
        azure={
            "base_url": "https://res.openai.azure.com/openai/v1",
            "key_env": "AZURE_OPENAI_API_KEY",
            "wire": "openai",
            "auth": "api-key",
            "models": OWN_MODELS,
        },
        ollama={
            "base_url": "http://127.0.0.1:11434/v1",
            "key_env": "",
            "wire": "openai",
            "models": OWN_MODELS,
        },
        vllm={
            "base_url": "http://vllm:8000/v1",
            "key_env": "VLLM_API_KEY",
            "wire": "openai",
            "models": OWN_MODELS,
        },
        nokey={"base_url": "http://relay/v1", "key_env": "RELAY_KEY", "wire": "openai", "models": OWN_MODELS},
    )
    # "all" never covers a provider of one's own: the simulator is the bundled providers' twin.
    settings = Settings(simulated_providers="all", sim_url="http://sim:9")
    keys = {"azure": SecretStr("az-key"), "vllm": SecretStr("vl-key")}
    adapters = build_adapters(catalog, settings, keys)
    assert {"azure", "ollama", "vllm"} <= set(adapters) and "nokey" not in adapters
    body = {"messages": [{"role": "developer", "content": "be brief"}], "max_completion_tokens": 9}
    azure = adapters["azure"].request(body, "m", stream=False)
    assert azure.url == "https://res.openai.azure.com/openai/v1/chat/completions"
    assert azure.headers["api-key"] == "az-key" and "authorization" not in azure.headers
    ollama = adapters["ollama"].request(body, "m", stream=False)
    assert "authorization" not in ollama.headers and "api-key" not in ollama.headers
    vllm = adapters["vllm"].request(body, "m", stream=False)
    assert vllm.headers["authorization"] == "Bearer vl-key"
    # What every OpenAI-compatible server takes: max_tokens, and the developer turn as system.
    sent = orjson.loads(vllm.body)
    assert sent["max_tokens"] == 9 and "max_completion_tokens" not in sent
    assert sent["messages"][0]["role"] == "system"
