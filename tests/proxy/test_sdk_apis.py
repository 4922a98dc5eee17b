"""The APIs the SDKs call beyond chat and messages, each through the official SDK against a real stack:
OpenAI's ``responses`` (stateless: input, instructions, tools, structured output, streaming) and
``models.retrieve``, Anthropic's ``messages.count_tokens``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import anthropic
import openai
import orjson
import pytest
from pydantic import BaseModel

from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyStack]:
    server = RedisServer(port=0, data_dir=tmp_path_factory.mktemp("redis"), persist=False).start()
    try:
        with ProxyStack(server) as running:
            yield running
    finally:
        server.stop()


def last_sent(stack: ProxyStack) -> dict[str, object]:
    """The body the simulator received last (OpenAI's wire format for an OpenAI arm)."""
    body: dict[str, object] = orjson.loads(stack.sim_app.bodies[-1])
    return body


def test_responses_create_with_instructions(stack: ProxyStack) -> None:
    raw = stack.openai().responses.with_raw_response.create(
        model="openai/gpt-4o-mini",
        instructions="Answer in one short sentence.",
        input="What is a routing proxy?",
        max_output_tokens=400,
        metadata={"ticket": "T-1"},
    )
    response = raw.parse()
    assert raw.headers["x-symphony-arm"] == "openai/gpt-4o-mini"
    assert response.object == "response" and response.status == "completed"
    assert response.model == "gpt-4o-mini"
    assert response.output_text  # the SDK joins the output_text parts
    assert response.usage is not None and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.metadata == {"ticket": "T-1"} and response.store is False
    sent = last_sent(stack)
    assert sent["messages"] == [
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": "What is a routing proxy?"},
    ]
    assert sent["max_tokens"] == 400


def test_responses_tools_and_a_tool_result_round_trip(stack: ProxyStack) -> None:
    client = stack.openai()
    first = client.responses.create(
        model="auto", input="What is the weather in Paris?", tools=[WEATHER_TOOL], tool_choice="required"
    )
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    second = client.responses.create(
        model="auto",
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 C and sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.output_text  # after the tool result the model answers in text
    # The SDK's usual history: the previous response's output items sent back as they came.
    third = client.responses.create(
        model="auto",
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            *[item.model_dump(exclude_none=True) for item in first.output],  # type: ignore[misc]
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 C and sunny"},
            *[item.model_dump(exclude_none=True) for item in second.output],  # type: ignore[misc]
            {"role": "user", "content": "And tomorrow?"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert third.status == "completed"


def test_responses_structured_output(stack: ProxyStack) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    response = stack.openai().responses.create(
        model="auto",
        input="Name a big city and its population.",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    value = json.loads(response.output_text)
    assert isinstance(value["city"], str) and isinstance(value["population"], int)

    class City(BaseModel):
        city: str
        population: int

    parsed = stack.openai().responses.parse(model="auto", input="Name a big city.", text_format=City)
    assert isinstance(parsed.output_parsed, City)  # the SDK's own parsing of the structured answer


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"])
def test_responses_streaming_events(stack: ProxyStack, model: str) -> None:
    with stack.openai().responses.stream(
        model=model, input="Tell me about quotas.", max_output_tokens=2000
    ) as events:
        seen = list(events)
        final = events.get_final_response()
    kinds = [event.type for event in seen]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [event.delta for event in seen if event.type == "response.output_text.delta"]
    assert deltas and final.output_text == "".join(deltas)
    assert [event.sequence_number for event in seen] == list(range(len(seen)))
    assert final.usage is not None and final.usage.output_tokens > 0
    assert final.model == model.split("/", 1)[1]


def test_responses_streaming_cut_by_max_output_tokens_ends_incomplete(stack: ProxyStack) -> None:
    events = list(
        stack.openai().responses.create(
            model="openai/gpt-4o-mini", input="Tell me a long story.", max_output_tokens=3, stream=True
        )
    )
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert last.response.output_text == deltas and len(deltas.split()) == 3


def test_responses_streaming_a_tool_call(stack: ProxyStack) -> None:
    with stack.openai().responses.stream(
        model="openai/gpt-4o", input="Weather in Oslo?", tools=[WEATHER_TOOL], tool_choice="required"
    ) as events:
        seen = list(events)
        final = events.get_final_response()
    kinds = [event.type for event in seen]
    assert "response.function_call_arguments.delta" in kinds
    [call] = [item for item in final.output if item.type == "function_call"]
    arguments = "".join(e.delta for e in seen if e.type == "response.function_call_arguments.delta")
    assert call.arguments == arguments and "city" in json.loads(arguments)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
        ({"frobnicate": True}, "frobnicate"),
    ],
)
def test_responses_refuses_what_it_cannot_do_by_name(
    stack: ProxyStack, extra: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        stack.openai().responses.create(model="auto", input="hi", extra_body=extra)
    assert refused.value.param == param, refused.value.message
    assert f"'{param}'" in refused.value.message or f"- {param}:" in refused.value.message


def test_models_retrieve(stack: ProxyStack) -> None:
    client = stack.openai()
    assert client.models.retrieve("openai/gpt-4o").owned_by == "openai"
    assert client.models.retrieve("claude-sonnet-4-5").owned_by == "anthropic"
    assert client.models.retrieve("auto").owned_by == "symphony"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-5-nonexistent")
    narrow = stack.issue_key("narrow", models=("openai/gpt-4o-mini",))
    limited = stack.openai(key=narrow)
    assert limited.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        limited.models.retrieve("openai/gpt-4o")  # outside the key's models, as /v1/models lists


def test_anthropic_count_tokens(stack: ProxyStack) -> None:
    system, question = "You are terse.", "How many tokens is this question, roughly?"
    counted = stack.anthropic().messages.count_tokens(
        model="claude-3-5-haiku-latest", system=system, messages=[{"role": "user", "content": question}]
    )
    # The proxy's estimate: characters / 4 over the text, plus 4 per message (system and user).
    assert counted.input_tokens == (len(system) + len(question)) // 4 + 2 * 4
    with pytest.raises(anthropic.NotFoundError):
        stack.anthropic().messages.count_tokens(model="claude-9", messages=[{"role": "user", "content": "x"}])


def test_embeddings(stack: ProxyStack) -> None:
    client = stack.openai()
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["routing", "quotas"]
    )
    answer = raw.parse()
    assert raw.headers["x-symphony-arm"] == "openai/text-embedding-3-small"
    assert raw.headers["x-symphony-task"] == "embeddings"
    assert [len(item.embedding) for item in answer.data] == [1536, 1536]  # the catalog's dimensions
    for item in answer.data:
        assert math.isclose(math.fsum(v * v for v in item.embedding), 1.0, rel_tol=1e-4)  # unit vectors
    again = client.embeddings.create(
        model="openai/text-embedding-3-small", input="routing", encoding_format="float"
    )
    assert again.data[0].embedding == pytest.approx(
        answer.data[0].embedding, abs=1e-6
    )  # same text, same vector
    assert answer.usage.prompt_tokens == math.ceil(len("routing") / 4) + math.ceil(len("quotas") / 4)
    short = client.embeddings.create(model="text-embedding-3-large", input="x", dimensions=256)
    assert len(short.data[0].embedding) == 256
    assert client.models.retrieve("text-embedding-3-small").owned_by == "openai"


@pytest.mark.parametrize(
    ("model", "extra", "error", "param"),
    [
        ("auto", {}, openai.BadRequestError, "model"),
        ("gpt-4o", {}, openai.NotFoundError, "model"),
        ("text-embedding-3-small", {"dimensions": 5000}, openai.BadRequestError, "dimensions"),
    ],
)
def test_embeddings_refusals(
    stack: ProxyStack, model: str, extra: dict[str, object], error: type[openai.APIStatusError], param: str
) -> None:
    with pytest.raises(error) as refused:
        stack.openai().embeddings.create(model=model, input="x", extra_body=extra)
    assert refused.value.body["param"] == param  # type: ignore[index]


def test_embeddings_have_their_own_quotas_and_usage_events(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server, limits={"rpm": 1}) as stack:
        client = stack.openai()
        text = "how much does an embedding cost?"
        client.embeddings.create(model="text-embedding-3-small", input=text)
        with pytest.raises(openai.RateLimitError) as limited:
            client.embeddings.create(model="text-embedding-3-small", input=text)
        assert limited.value.code == "app_rate_limited"
        narrow = stack.issue_key("narrow", models=("gpt-4o-mini",))
        with pytest.raises(openai.PermissionDeniedError):
            stack.openai(key=narrow).embeddings.create(model="text-embedding-3-small", input=text)
        events = stack.events()
    [decision] = events.decisions
    [usage] = events.usages
    assert (decision.task, decision.served_by, decision.policy) == (
        "embeddings",
        "openai/text-embedding-3-small",
        "override",
    )
    tokens = math.ceil(len(text) / 4)
    assert (usage.status, usage.input_tokens, usage.output_tokens) == ("ok", tokens, 0)
    assert usage.cost_usd == pytest.approx(tokens * 0.02 / 1_000_000)  # the catalog's price
