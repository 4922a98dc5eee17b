"""`/v1/jobs` against a real proxy, simulator and Redis: create, read, cancel; another app's job is a 404
like an unknown one; every bad input is a 4xx whose `param` names the field."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from symphony.clock import wall_ms
from symphony.jobs import JobStore
from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack, bearer

HOUR_MS = 3_600_000
REQUEST = {"model": "auto", "messages": [{"role": "user", "content": "summarise the week"}], "max_tokens": 16}


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[ProxyStack]:
    with ProxyStack(redis_server) as running:
        yield running


def spec(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"request": REQUEST, "deadline_ms": wall_ms() + 6 * HOUR_MS, "tokens": 5_000}
    body.update(changes)
    return {name: value for name, value in body.items() if value is not None}


def create(stack: ProxyStack, body: Any, key: str | None = None) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/jobs", json=body, headers=bearer(key or stack.key), timeout=30)


def get(stack: ProxyStack, job_id: str, key: str | None = None) -> httpx.Response:
    return httpx.get(f"{stack.base_url}/jobs/{job_id}", headers=bearer(key or stack.key), timeout=30)


def cancel(stack: ProxyStack, job_id: str, key: str | None = None) -> httpx.Response:
    return httpx.delete(f"{stack.base_url}/jobs/{job_id}", headers=bearer(key or stack.key), timeout=30)


def test_a_job_is_created_read_and_cancelled_by_its_app(stack: ProxyStack) -> None:
    deadline = wall_ms() + 6 * HOUR_MS
    created = create(stack, spec(deadline_ms=deadline, providers=["openai", "anthropic"]))
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["object"] == "job" and job["id"].startswith("job_")
    assert (job["state"], job["deadline_ms"], job["tokens"], job["providers"]) == (
        "queued",
        deadline,
        5_000,
        ["openai", "anthropic"],
    )
    read = get(stack, job["id"])
    assert read.status_code == 200 and read.json() == job
    cancelled = cancel(stack, job["id"])
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled" and cancelled.json()["finished_ms"] is not None
    assert cancel(stack, job["id"]).json()["state"] == "cancelled"  # cancelling again changes nothing
    assert get(stack, job["id"]).json()["state"] == "cancelled"


def test_models_are_stored_as_catalog_arms(stack: ProxyStack) -> None:
    created = create(stack, spec(models=["gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]))
    assert created.status_code == 201, created.text
    assert created.json()["models"] == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]


def test_another_apps_job_is_the_same_404_as_an_unknown_one(stack: ProxyStack) -> None:
    job_id = create(stack, spec()).json()["id"]
    other = stack.issue_key("other-app")
    unknown = "job_01JABCDEFGHJKMNPQRSTVWXYZ0"
    for answer, which in (
        (get(stack, job_id, other), job_id),
        (cancel(stack, job_id, other), job_id),
        (get(stack, unknown), unknown),
        (cancel(stack, unknown), unknown),
        (get(stack, "nonsense"), "nonsense"),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == {
            "message": f"No job {which} exists for this app.",
            "type": "invalid_request_error",
            "param": "id",
            "code": "job_not_found",
        }
    assert get(stack, job_id).json()["state"] == "queued"  # the other app's cancel did nothing


def test_a_running_job_cannot_be_cancelled(stack: ProxyStack, redis_server: RedisServer) -> None:
    job_id = create(stack, spec()).json()["id"]

    async def claim() -> None:
        client = aioredis.Redis.from_url(redis_server.url)
        store = JobStore(client)
        await store.heartbeat("d1")
        assert await store.claim(job_id, "d1", "", wall_ms()) is not None
        await client.aclose()

    asyncio.run(claim())
    answer = cancel(stack, job_id)
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "job_not_cancellable"
    assert f"Job {job_id} is running" in answer.json()["error"]["message"]


BAD_INPUT = [
    ({"deadline_ms": 1, "tokens": 5}, "request"),
    (spec(request={"model": "auto"}), "request.messages"),
    (spec(request={"messages": [{"role": "robot", "content": "hi"}]}), "request.messages.0.role"),
    (spec(request={**REQUEST, "stream": True}), "request.stream"),
    (spec(request={**REQUEST, "model": "gpt-99"}), "request.model"),
    (spec(request={**REQUEST, "model": "gemini-2.5-flash"}, providers=["openai"]), "request.model"),
    (spec(request="summarise"), "request"),
    (spec(deadline_ms=1_000), "deadline_ms"),
    ("past", "deadline_ms"),
    ("far", "deadline_ms"),
    (spec(deadline_ms="tomorrow"), "deadline_ms"),
    (spec(deadline_ms=None), "deadline_ms"),
    (spec(tokens=0), "tokens"),
    (spec(tokens=-5), "tokens"),
    (spec(tokens=10**12), "tokens"),
    (spec(tokens=1.5), "tokens"),
    (spec(tokens="many"), "tokens"),
    (spec(providers=[]), "providers"),
    (spec(providers=["openai", "nope"]), "providers.1"),
    (spec(models=["gpt-99"]), "models.0"),
    (spec(models=["openai/claude-3-5-haiku-latest"]), "models.0"),
    (spec(providers=["openai"], models=["gpt-4o-mini"]), "models"),
    (spec(deadline=123), "deadline"),
    (spec(task=""), "task"),
]


@pytest.mark.parametrize(("body", "param"), BAD_INPUT, ids=[f"{i}-{p}" for i, (_, p) in enumerate(BAD_INPUT)])
def test_bad_input_is_a_400_naming_the_field(stack: ProxyStack, body: Any, param: str) -> None:
    if body == "past":
        body = spec(deadline_ms=wall_ms() - 1)
    elif body == "far":
        body = spec(deadline_ms=wall_ms() + 40 * 24 * HOUR_MS)
    answer = create(stack, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param, error
    assert param in error["message"], error


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]"])
def test_a_malformed_body_is_a_400(stack: ProxyStack, raw: bytes) -> None:
    answer = httpx.post(f"{stack.base_url}/jobs", content=raw, headers=bearer(stack.key), timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_a_key_that_may_use_none_of_the_jobs_models_is_a_403(stack: ProxyStack) -> None:
    limited = stack.issue_key("limited", models=("gpt-4o-mini",))
    refused = create(stack, spec(providers=["anthropic"]), limited)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["param"] == "providers"
    assert create(stack, spec(providers=["openai"]), limited).status_code == 201


def test_no_key_is_a_401(stack: ProxyStack) -> None:
    answer = httpx.post(f"{stack.base_url}/jobs", json=spec(), timeout=30)
    assert answer.status_code == 401


def test_jobs_are_a_503_while_redis_does_not_answer(stack: ProxyStack, redis_server: RedisServer) -> None:
    job_id = create(stack, spec()).json()["id"]  # the key is read (and kept, QUOTA_FAIL_MODE=open)
    redis_server.stop()
    for answer in (create(stack, spec()), get(stack, job_id), cancel(stack, job_id)):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "jobs_unavailable" and answer.headers["retry-after"] == "1"


def test_a_job_survives_restarts_of_the_proxy_and_of_redis(persistent_redis: RedisServer) -> None:
    with ProxyStack(persistent_redis) as first:
        job = create(first, spec()).json()
    persistent_redis.stop()
    persistent_redis.start()
    with ProxyStack(persistent_redis) as second:  # another proxy, another key of the same app
        read = get(second, job["id"])
        assert read.status_code == 200, read.text
        assert read.json() == job
