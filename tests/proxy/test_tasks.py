"""Tasks: a request's task must be a task name, one the champion lacks is routed by its default table, and the
answer says which task and table routing used."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from symphony.clock import wall_ms
from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack

# The champion's tasks, read from the file itself.
CHAMPION = json.loads((Path(__file__).parents[2] / "policies" / "champion.json").read_text())
KNOWN = sorted(CHAMPION["tasks"])
MESSAGES = [{"role": "user", "content": "write a haiku"}]


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[ProxyStack]:
    with ProxyStack(redis_server) as running:
        yield running


def assert_names_the_known_tasks(message: str) -> None:
    assert "Task 'poetry!!' in " in message and "is not a task name" in message
    assert all(task in message for task in KNOWN), message


def test_what_is_no_task_name_is_refused_in_each_sdks_shape(stack: ProxyStack) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        stack.openai().chat.completions.create(
            model="auto", messages=MESSAGES, extra_headers={"x-symphony-task": "poetry!!"}
        )
    assert refused.value.code == "invalid_task" and refused.value.param == "x-symphony-task"
    assert_names_the_known_tasks(refused.value.message)
    with pytest.raises(anthropic.BadRequestError) as refused_too:
        stack.anthropic().messages.create(
            model="auto", max_tokens=16, messages=MESSAGES, extra_headers={"x-symphony-task": "poetry!!"}
        )
    assert_names_the_known_tasks(refused_too.value.message)
    native = httpx.post(
        f"{stack.base_url}/route/execute", headers=stack.auth, json={"task": "poetry!!", "messages": MESSAGES}
    )
    assert native.status_code == 400 and native.json()["error"]["param"] == "task"
    job = httpx.post(
        f"{stack.base_url}/jobs",
        headers=stack.auth,
        json={
            "request": {"messages": MESSAGES},
            "deadline_ms": wall_ms() + 3_600_000,
            "tokens": 100,
            "task": "poetry!!",
        },
    )
    assert job.status_code == 400 and job.json()["error"]["param"] == "task"
    assert stack.sim_app.total() == 0
    assert stack.events().decisions == []  # nothing routed, nothing stored as a task


def test_the_answer_says_which_task_routing_used(stack: ProxyStack) -> None:
    client = stack.openai()
    code = client.chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES, max_tokens=16, extra_headers={"x-symphony-task": "code"}
    )
    assert (code.headers["x-symphony-task"], code.headers["x-symphony-task-table"]) == ("code", "code")
    plain = client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES, max_tokens=16)
    assert plain.headers["x-symphony-task"] == "chat"  # no header: chat
    native = httpx.post(
        f"{stack.base_url}/route/execute",
        headers=stack.auth,
        json={"task": "summarise", "messages": MESSAGES, "max_tokens": 16},
    )
    assert native.headers["x-symphony-task"] == "summarise"
    assert native.json()["decision"]["task"] == "summarise"
    anthropic_answer = stack.anthropic().messages.with_raw_response.create(
        model="auto", max_tokens=16, messages=MESSAGES, extra_headers={"x-symphony-task": "search"}
    )
    assert anthropic_answer.headers["x-symphony-task"] == "search"
    # A task the champion has no table for: routed by its default table, learned as itself.
    assert "reasoning" not in CHAMPION["tasks"]
    reasoning = client.chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES, max_tokens=16, extra_headers={"x-symphony-task": "reasoning"}
    )
    assert (reasoning.headers["x-symphony-task"], reasoning.headers["x-symphony-task-table"]) == (
        "reasoning",
        "default",
    )
    tasks = [decision.task for decision in stack.events().decisions]
    assert sorted(tasks) == ["chat", "code", "reasoning", "search", "summarise"]  # the shards interleave
