"""The Anthropic-compatible inbound format: validation, translation both ways, and the official SDK.

The SDK tests run the ``anthropic`` package against a small Starlette app that does
what the gateway does with this module: parse the request, make it canonical, send it
through a provider adapter to the simulator, and translate the answer back (whole or
streamed). So the SDK reads bytes this module produced from real provider answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import MessageParam, ToolParam
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy.adapters.anthropic import AnthropicAdapter
from proxy.adapters.base import Adapter
from proxy.adapters.registry import build_adapters
from proxy.adapters.sse import SseParser
from proxy.api.messages_stream import MessagesStream
from proxy.api.messages_translate import (
    MessagesError,
    anthropic_error,
    anthropic_error_body,
    parse_messages_request,
    to_messages_response,
)
from simulator import BackgroundServer
from simulator import create_app as create_sim_app
from simulator.generation import count_input_tokens
from symphony.catalog import load_catalog
from symphony.clock import RealClock
from symphony.settings import Settings

CATALOG = load_catalog()
IMAGE_B64 = "iVBORw0KGgo="
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def request_body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64, **fields})


HELLO = [{"role": "user", "content": "hi"}]

# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "The request body is not valid JSON."),
        (b"[]", "The request body must be a JSON object."),
        (orjson.dumps({"model": "m", "messages": HELLO}), "max_tokens: Field required"),
        (request_body(messages=[]), "messages: List should have at least 1 item"),
        (request_body(), "messages: Field required"),
        (request_body(max_tokens="64", messages=HELLO), "max_tokens: Input should be a valid integer"),
        (
            request_body(messages=[{"role": "system", "content": "x"}]),
            "messages.0.role: Input should be 'user'",
        ),
        (
            request_body(messages=[{"role": "user", "content": 5}]),
            "messages.0.content: Input should be a string or a list of content blocks",
        ),
        (
            request_body(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]),
            "messages.0.content.0.text: Input should be a valid string",
        ),
        (
            request_body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "x"},
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/bmp", "data": "x"},
                            },
                        ],
                    }
                ]
            ),
            "messages.0.content.1.source.media_type: Input should be",
        ),
        (
            request_body(messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}]),
            "messages.0.content.0: Input tag 'document' found",
        ),
        (
            request_body(messages=HELLO, temperature=1.5),
            "temperature: Input should be less than or equal to 1",
        ),
        (request_body(messages=HELLO, tool_choice={"type": "tool"}), "tool_choice.name: Field required"),
        (request_body(messages=HELLO, tools=[{"name": "x"}]), "tools.0.input_schema: Field required"),
        (
            request_body(messages=HELLO, frequency_penalty=1),
            "frequency_penalty: Extra inputs are not permitted",
        ),
        (
            request_body(messages=HELLO, system=3),
            "system: Input should be a string or a list of content blocks",
        ),
    ],
)
def test_validation_errors_name_the_field(body: bytes, message: str) -> None:
    with pytest.raises(MessagesError) as refused:
        parse_messages_request(body)
    assert (refused.value.status, refused.value.type) == (400, "invalid_request_error")
    assert refused.value.message.startswith(message), refused.value.message
    assert orjson.loads(refused.value.body()) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": refused.value.message},
    }


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (
            [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}],
            "tool_use",
        ),
        (
            [
                {
                    "role": "assistant",
                    "content": [{"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}],
                }
            ],
            "images",
        ),
    ],
)
def test_misplaced_blocks_are_refused(messages: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(MessagesError, match=message):
        parse_messages_request(request_body(messages=messages)).to_canonical()


def test_thinking_is_refused_not_dropped() -> None:
    parsed = parse_messages_request(
        request_body(messages=HELLO, thinking={"type": "enabled", "budget_tokens": 1024})
    )
    with pytest.raises(MessagesError, match="thinking"):
        parsed.to_canonical()
    parse_messages_request(request_body(messages=HELLO, thinking={"type": "disabled"})).to_canonical()


# --- translation --------------------------------------------------------------------------------

CONVERSATION: list[dict[str, Any]] = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE_B64}},
            {"type": "image", "source": {"type": "url", "url": "https://img.example/a.jpg"}},
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "snow"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "sun"}]},
            {"type": "text", "text": "Summarise."},
        ],
    },
]
FULL_REQUEST: dict[str, Any] = {
    "model": "claude-3-5-haiku-latest",
    "max_tokens": 300,
    "system": [{"type": "text", "text": "You are terse."}],
    "messages": CONVERSATION,
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "stop_sequences": ["END"],
    "tools": [WEATHER],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stream": True,
}


def test_to_canonical_golden() -> None:
    canonical = parse_messages_request(
        orjson.dumps({**FULL_REQUEST, "metadata": {"user_id": "u-1"}})
    ).to_canonical()
    assert canonical == {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 300,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE_B64}"}},
                    {"type": "image_url", "image_url": {"url": "https://img.example/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "snow"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "sun"},
            {"role": "user", "content": "Summarise."},
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-1",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather in a city.",
                    "parameters": WEATHER["input_schema"],
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }


def test_error_results_reach_the_model_marked() -> None:
    result = {"type": "tool_result", "tool_use_id": "t", "content": "no such city", "is_error": True}
    canonical = parse_messages_request(
        request_body(messages=[{"role": "user", "content": [result]}])
    ).to_canonical()
    assert canonical["messages"] == [{"role": "tool", "tool_call_id": "t", "content": "Error: no such city"}]


def test_request_round_trip_through_the_anthropic_adapter() -> None:
    """Anthropic -> canonical -> Anthropic gives back the request (string shorthands as blocks)."""
    canonical = parse_messages_request(orjson.dumps(FULL_REQUEST)).to_canonical()
    adapter = AnthropicAdapter("anthropic", "https://api.anthropic.com/v1", "k")
    again = orjson.loads(adapter.request(canonical, "claude-3-5-haiku-latest", stream=True).body)
    expected = {**FULL_REQUEST}
    expected["messages"] = orjson.loads(orjson.dumps(CONVERSATION))
    expected["messages"][2]["content"][1]["content"] = "sun"  # one text block is sent as its text
    assert again == expected


def _message(content: list[dict[str, Any]], stop_reason: str) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-latest",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 7},
    }


@pytest.mark.parametrize(
    ("content", "stop_reason"),
    [
        ([{"type": "text", "text": "Hello."}], "end_turn"),
        ([{"type": "text", "text": "Hel"}], "max_tokens"),
        (
            [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
            ],
            "tool_use",
        ),
    ],
)
def test_response_round_trip(content: list[dict[str, Any]], stop_reason: str) -> None:
    original = _message(content, stop_reason)
    canonical = AnthropicAdapter("anthropic", "https://a", "k").response(orjson.dumps(original)).body
    again = orjson.loads(to_messages_response(canonical, "claude-3-5-haiku-latest"))
    assert again == original
    anthropic.types.Message.model_validate(again)


def test_canonical_answer_without_text_or_with_odd_arguments() -> None:
    canonical = {
        "id": "chatcmpl-7",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    message = orjson.loads(to_messages_response(orjson.dumps(canonical), "gpt-4o"))
    assert message["id"] == "msg_chatcmpl-7"
    assert message["content"] == [{"type": "tool_use", "id": "c", "name": "f", "input": {"arguments": "[1]"}}]
    assert (message["stop_reason"], message["usage"]) == ("tool_use", {"input_tokens": 3, "output_tokens": 2})


def _canonical_stream(
    deltas: list[tuple[dict[str, Any], str | None]], usage: tuple[int, int] | None
) -> bytes:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    out = b""
    for delta, finish in deltas:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        out += b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"
    if usage is not None:
        counts = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
        out += b"data: " + orjson.dumps({**head, "choices": [], "usage": counts}) + b"\n\n"
    return out + b"data: [DONE]\n\n"


TOOL_STREAM = _canonical_stream(
    [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Let"}, None),
        ({"content": " me check."}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": ' "Oslo"}'}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    }
                ]
            },
            None,
        ),
        ({}, "tool_calls"),
    ],
    usage=(11, 9),
)


def _events(sse: bytes) -> list[tuple[str, dict[str, Any]]]:
    parser = SseParser()
    return [(item.event, orjson.loads(item.data)) for item in parser.feed(sse) + parser.flush()]


def test_stream_translator_golden_in_any_split() -> None:
    expected = [
        ("message_start", None),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Let"}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": " me check."}}),
        ("content_block_stop", {"index": 0}),
        (
            "content_block_start",
            {
                "index": 1,
                "content_block": {"type": "tool_use", "id": "c1", "name": "get_weather", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
        ),
        (
            "content_block_delta",
            {"index": 1, "delta": {"type": "input_json_delta", "partial_json": ' "Oslo"}'}},
        ),
        ("content_block_stop", {"index": 1}),
        (
            "content_block_start",
            {"index": 2, "content_block": {"type": "tool_use", "id": "c2", "name": "get_time", "input": {}}},
        ),
        ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        ("content_block_stop", {"index": 2}),
        (
            "message_delta",
            {
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"input_tokens": 11, "output_tokens": 9},
            },
        ),
        ("message_stop", {}),
    ]
    pieces_options = [[TOOL_STREAM], [TOOL_STREAM[i : i + 1] for i in range(len(TOOL_STREAM))]]
    pieces_options += [[TOOL_STREAM[i : i + 5] for i in range(0, len(TOOL_STREAM), 5)]]
    for pieces in pieces_options:
        translator = MessagesStream("claude-x")
        events = _events(b"".join(translator.feed(piece) for piece in pieces) + translator.flush())
        assert [name for name, _ in events] == [name for name, _ in expected]
        for (name, payload), (_, wanted) in zip(events, expected, strict=True):
            assert payload["type"] == name
            if wanted is not None:
                assert {key: value for key, value in payload.items() if key != "type"} == wanted
        start = events[0][1]["message"]
        assert (start["id"], start["model"], start["content"]) == ("msg_chatcmpl-1", "claude-x", [])
        assert (translator.input_tokens, translator.output_tokens) == (11, 9)


def test_stream_translator_ends_a_stream_that_ends_early() -> None:
    translator = MessagesStream("m")
    partial = _canonical_stream(
        [({"role": "assistant", "content": ""}, None), ({"content": "Hi"}, None)], None
    )
    events = _events(translator.feed(partial.removesuffix(b"data: [DONE]\n\n")) + translator.flush())
    assert [name for name, _ in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert translator.flush() == b""


# --- the official SDK against translated answers ------------------------------------------------

SDK_PROVIDERS = ["anthropic", "openai", "gemini", "deepseek"]
CANNED_STREAMS = {
    "tools": TOOL_STREAM,
    "error": _canonical_stream(
        [({"role": "assistant", "content": ""}, None), ({"content": "Hi"}, None)], None
    ).replace(
        b"data: [DONE]",
        b'data: {"error":{"message":"Overloaded","type":"api_error","code":"overloaded_error"}}',
    ),
}


class MiniGateway:
    """What the gateway does with this module, minus routing: one adapter chosen by a header."""

    def __init__(self, adapters: dict[str, Adapter]) -> None:
        self.adapters = adapters
        self.http = httpx.AsyncClient(timeout=10.0)

    async def messages(self, request: Request) -> Response:
        try:
            parsed = parse_messages_request(await request.body())
            canonical = parsed.to_canonical()
        except MessagesError as error:
            return Response(error.body(), status_code=error.status, media_type="application/json")
        if "x-test-status" in request.headers:
            status = int(request.headers["x-test-status"])
            canonical_error = orjson.dumps({"error": {"message": f"test error {status}", "type": "x"}})
            return Response(
                anthropic_error(status, canonical_error), status_code=status, media_type="application/json"
            )
        if "x-test-canned" in request.headers:
            translator = MessagesStream(parsed.model)
            body = translator.feed(CANNED_STREAMS[request.headers["x-test-canned"]]) + translator.flush()
            return Response(body, media_type="text/event-stream")
        provider = request.headers["x-test-provider"]
        adapter = self.adapters[provider]
        model = next(iter(CATALOG.providers[provider].models))
        upstream = adapter.request(canonical, model, stream=parsed.stream)
        response = await self.http.send(
            self.http.build_request("POST", upstream.url, headers=upstream.headers, content=upstream.body),
            stream=True,
        )
        if response.status_code != 200:
            failure = adapter.failure(response.status_code, response.headers, await response.aread())
            body = anthropic_error(failure.http_status, failure.body)
            return Response(body, status_code=failure.http_status, media_type="application/json")
        if not parsed.stream:
            answer = adapter.response(await response.aread())
            return Response(to_messages_response(answer.body, parsed.model), media_type="application/json")
        return StreamingResponse(
            self._relay(response, adapter, model, parsed.model), media_type="text/event-stream"
        )

    async def _relay(
        self, response: httpx.Response, adapter: Adapter, model: str, asked: str
    ) -> AsyncIterator[bytes]:
        translator = adapter.stream(model, include_usage=True)
        inbound = MessagesStream(asked)
        async for piece in response.aiter_raw():
            out = inbound.feed(translator.feed(piece))
            if out:
                yield out
        yield inbound.feed(translator.flush()) + inbound.flush()
        await response.aclose()


@pytest.fixture(scope="module")
def sim() -> Iterator[BackgroundServer]:
    with BackgroundServer(create_sim_app(RealClock(), CATALOG, seed=5)) as server:
        yield server


@pytest.fixture(scope="module")
def gateway_url(sim: BackgroundServer) -> Iterator[str]:
    adapters = build_adapters(CATALOG, Settings(simulated_providers="all", sim_url=sim.url), {})
    app = Starlette(routes=[Route("/v1/messages", MiniGateway(adapters).messages, methods=["POST"])])
    with BackgroundServer(app) as gateway:
        yield gateway.url


def client(url: str, **headers: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="symphony-key", max_retries=0, default_headers=headers)


SYSTEM, QUESTION = "You are terse.", "Which provider should serve this request, and why?"


@pytest.mark.parametrize("provider", SDK_PROVIDERS)
def test_sdk_create(gateway_url: str, provider: str) -> None:
    message = client(gateway_url, **{"x-test-provider": provider}).messages.create(
        model="auto",
        max_tokens=200,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
    )
    assert message.model == "auto" and message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text"
    assert message.usage.output_tokens == len(block.text.split()) > 0
    assert message.usage.input_tokens == count_input_tokens([SYSTEM, QUESTION])


@pytest.mark.parametrize("provider", SDK_PROVIDERS)
def test_sdk_stream(gateway_url: str, provider: str) -> None:
    with client(gateway_url, **{"x-test-provider": provider}).messages.stream(
        model="auto",
        max_tokens=200,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
    ) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == text  # type: ignore[union-attr]
    assert message.usage.output_tokens == len(text.split()) > 0
    assert message.usage.input_tokens == count_input_tokens([SYSTEM, QUESTION])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", SDK_PROVIDERS)
def test_sdk_tool_round_trip(gateway_url: str, provider: str, stream: bool) -> None:
    sdk = client(gateway_url, **{"x-test-provider": provider})
    messages: list[MessageParam] = [{"role": "user", "content": "Use get_weather for Oslo."}]

    def ask() -> anthropic.types.Message:
        if not stream:
            return sdk.messages.create(model="auto", max_tokens=200, tools=[WEATHER], messages=messages)
        with sdk.messages.stream(model="auto", max_tokens=200, tools=[WEATHER], messages=messages) as events:
            return events.get_final_message()

    message = ask()
    assert message.stop_reason == "tool_use"
    [call] = [block for block in message.content if block.type == "tool_use"]
    assert call.name == "get_weather" and isinstance(call.input, dict) and isinstance(call.input["city"], str)
    messages.append({"role": "assistant", "content": message.content})
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "-3 C"}]}
    )
    answer = ask()
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"


def test_sdk_reads_a_canned_stream_with_parallel_tool_calls(gateway_url: str) -> None:
    sdk = client(gateway_url, **{"x-test-canned": "tools"})
    with sdk.messages.stream(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        message = stream.get_final_message()
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Let me check."  # type: ignore[union-attr]
    assert message.content[1].input == {"city": "Oslo"}  # type: ignore[union-attr]
    assert message.content[2].input == {}  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 9)


def test_sdk_raises_a_stream_error(gateway_url: str) -> None:
    sdk = client(gateway_url, **{"x-test-canned": "error"})
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):  # noqa: SIM117
        with sdk.messages.stream(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            stream.get_final_message()


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (403, anthropic.PermissionDeniedError),
        (404, anthropic.NotFoundError),
        (413, anthropic.APIStatusError),
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, anthropic.InternalServerError),
    ],
)
def test_sdk_raises_its_own_error_types(gateway_url: str, status: int, exception: type[Exception]) -> None:
    sdk = client(gateway_url, **{"x-test-status": str(status)})
    with pytest.raises(exception) as raised:
        sdk.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    error = raised.value
    assert isinstance(error, anthropic.APIStatusError) and error.status_code == status
    assert error.body == {
        "type": "error",
        "error": {"type": anthropic_error_type(status), "message": f"test error {status}"},
    }


def anthropic_error_type(status: int) -> str:
    return str(orjson.loads(anthropic_error_body(status, None, ""))["error"]["type"])


def test_sdk_gets_a_400_naming_the_field(gateway_url: str) -> None:
    sdk = client(gateway_url, **{"x-test-provider": "openai"})
    ask: dict[str, Any] = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        sdk.messages.create(**ask, extra_body={"temperature": 1.5})
    with pytest.raises(anthropic.BadRequestError, match=r"messages\.0\.content\.0\.source"):
        bad_image = {"type": "image", "source": {"type": "url", "url": "file:///etc/passwd"}}
        sdk.messages.create(**{**ask, "messages": [{"role": "user", "content": [bad_image]}]})


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "openai"])
def test_sdk_structured_output(gateway_url: str, provider: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
        "required": ["city", "temp_c"],
        "additionalProperties": False,
    }
    message = client(gateway_url, **{"x-test-provider": provider}).messages.create(
        model="auto",
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert message.stop_reason == "end_turn"
    value = orjson.loads(message.content[0].text)  # type: ignore[union-attr]
    assert isinstance(value["city"], str) and isinstance(value["temp_c"], int | float)


@pytest.mark.parametrize("provider", SDK_PROVIDERS)
def test_sdk_sees_provider_failures_as_its_own_errors(
    gateway_url: str, sim: BackgroundServer, provider: str
) -> None:
    sdk = client(gateway_url, **{"x-test-provider": provider})
    ask = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    try:
        httpx.put(f"{sim.url}/admin/faults/{provider}", json={"rate_429": 1.0}).raise_for_status()
        with pytest.raises(anthropic.RateLimitError) as limited:
            sdk.messages.create(**ask)  # type: ignore[call-overload]
        assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        httpx.put(f"{sim.url}/admin/faults/{provider}", json={"rate_5xx": 1.0}).raise_for_status()
        with pytest.raises(anthropic.InternalServerError):
            sdk.messages.create(**ask)  # type: ignore[call-overload]
    finally:
        httpx.delete(f"{sim.url}/admin/faults").raise_for_status()
