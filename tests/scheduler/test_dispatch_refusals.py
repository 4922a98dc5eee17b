"""A job the proxy refused before trying any provider waits for room, through a real dispatcher, proxy,
simulator and Redis: it did not run, so it is queued again and held for the refusal's ``retry-after``
while its deadline allows, else it fails with the refusal.

The refusal here is the app's own rate: its key allows one request a minute, and the app has just made it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from scheduler.dispatcher import RETRY_S, Dispatcher
from symphony.clock import RealClock, wall_ms
from symphony.flags import Flags
from symphony.jobs import Job, JobStore
from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack, bearer

REQUEST = {"model": "auto", "messages": [{"role": "user", "content": "summarise"}], "max_tokens": 8}
RUN_S = 1.5  # long enough for several ticks, far shorter than RETRY_S and the minute's retry-after


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[ProxyStack]:
    with ProxyStack(redis_server, dispatcher_token=SecretStr(secrets.token_urlsafe(32))) as running:
        yield running


def _job_of_an_app_at_its_rate(stack: ProxyStack, deadline_in_ms: int) -> str:
    key = stack.issue_key("one-a-minute", rpm=1)
    own = httpx.post(f"{stack.base_url}/chat/completions", json=REQUEST, headers=bearer(key), timeout=30)
    assert own.status_code == 200, own.text
    body = {"request": REQUEST, "deadline_ms": wall_ms() + deadline_in_ms, "tokens": 100}
    answer = httpx.post(f"{stack.base_url}/jobs", json=body, headers=bearer(key), timeout=30)
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["id"]
    return job_id


def _dispatch_for_a_while(stack: ProxyStack, job_id: str) -> tuple[Job, int]:
    """Run a real dispatcher for ``RUN_S``; the job's record then, and how many dispatches it sent."""
    assert stack.settings.dispatcher_token is not None
    token = stack.settings.dispatcher_token.get_secret_value()

    async def main() -> tuple[Job, int]:
        client = aioredis.Redis.from_url(stack.settings.redis_url)
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
            dispatcher = Dispatcher(client, http, RealClock(), token, defaults=Flags(True, 0.05, False))
            stop = asyncio.Event()
            running = asyncio.create_task(dispatcher.run(stop))
            await asyncio.sleep(RUN_S)
            stop.set()
            await running
            found = await JobStore(client).get(job_id)
        await client.aclose()
        assert found is not None
        return found, dispatcher.sent

    return asyncio.run(main())


def test_a_job_refused_for_room_waits_in_the_queue_instead_of_failing(stack: ProxyStack) -> None:
    job_id = _job_of_an_app_at_its_rate(stack, deadline_in_ms=3_600_000)
    found, sent = _dispatch_for_a_while(stack, job_id)
    assert sent == 1  # held for at least RETRY_S after the refusal, not sent on every tick
    assert RUN_S < RETRY_S
    assert found.state == "queued" and (found.owner, found.nonce, found.admitted_ms) == ("", "", None), found
    assert stack.sim_app.total() == 1  # the app's own request only


def test_a_job_whose_deadline_comes_before_the_room_fails_with_the_refusal(stack: ProxyStack) -> None:
    job_id = _job_of_an_app_at_its_rate(stack, deadline_in_ms=20_000)  # the minute frees in 50-60 s
    found, sent = _dispatch_for_a_while(stack, job_id)
    assert sent == 1
    assert (found.state, found.status) == ("failed", 429), found
    assert "one-a-minute" in found.error and "limit of 1 requests per minute" in found.error
    assert stack.sim_app.total() == 1
