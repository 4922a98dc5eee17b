"""Jobs the dispatcher sends through the real proxy: only with its token, only a claimed job, once per
claim, only the job's body, as the job's app, on the provider its claim allows."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from symphony.app_keys import revoke_key
from symphony.clock import wall_ms
from symphony.jobs import NOT_RUN, Job, JobStore
from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack, bearer

TOKEN = secrets.token_urlsafe(32)
REQUEST = {"model": "auto", "messages": [{"role": "user", "content": "summarise"}], "max_tokens": 8}


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[ProxyStack]:
    with ProxyStack(redis_server, dispatcher_token=SecretStr(TOKEN)) as running:
        yield running


def create(stack: ProxyStack, key: str | None = None, **fields: object) -> str:
    return str(created(stack, key, **fields)["id"])


def created(stack: ProxyStack, key: str | None = None, **fields: object) -> dict[str, object]:
    body = {"request": REQUEST, "deadline_ms": wall_ms() + 3_600_000, "tokens": 100, **fields}
    answer = httpx.post(f"{stack.base_url}/jobs", json=body, headers=bearer(key or stack.key), timeout=30)
    assert answer.status_code == 201, answer.text
    job: dict[str, object] = answer.json()
    return job


def claim(stack: ProxyStack, job_id: str, provider: str = "") -> str:
    async def main() -> str:
        client = aioredis.Redis.from_url(stack.settings.redis_url)
        store = JobStore(client)
        await store.heartbeat("d1", ttl_ms=60_000)
        nonce = await store.claim(job_id, "d1", provider, wall_ms())
        await client.aclose()
        assert nonce is not None
        return nonce

    return asyncio.run(main())


def dispatch(
    stack: ProxyStack,
    job_id: str,
    nonce: str,
    *,
    token: str = TOKEN,
    body: object = None,
    path: str = "chat/completions",
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}", "x-symphony-job": job_id, "x-symphony-dispatch": nonce}
    return httpx.post(f"{stack.base_url}/{path}", json=body or REQUEST, headers=headers, timeout=30)


def test_a_claimed_job_is_served_once_as_its_app_on_its_claimed_provider(stack: ProxyStack) -> None:
    job = created(stack, task="summarise", providers=["openai", "gemini"], tokens=123)
    job_id = str(job["id"])
    nonce = claim(stack, job_id, provider="gemini")
    served = dispatch(stack, job_id, nonce)
    assert served.status_code == 200, served.text
    assert served.headers["x-symphony-arm"].startswith("gemini/")
    again = dispatch(stack, job_id, nonce)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_admitted"
    [decision] = stack.events().decisions
    assert (decision.app, decision.task, decision.provider) == ("tests", "summarise", "gemini")
    assert all(arm.startswith("gemini/") for arm in decision.candidates)
    assert decision.overrides == {  # the job's terms, for scheduler-report
        "job": job_id,
        "job_deadline_ms": str(job["deadline_ms"]),
        "job_created_ms": str(job["created_ms"]),
        "job_tokens": "123",
        "job_providers": "gemini,openai",
    }
    assert sum(count for (provider, _), count in stack.sim_app.answers.items()) == 1


def test_a_jobs_models_narrow_where_it_runs(stack: ProxyStack) -> None:
    job_id = create(stack, models=["anthropic/claude-3-5-haiku-latest"])
    served = dispatch(stack, job_id, claim(stack, job_id))
    assert served.status_code == 200, served.text
    assert served.headers["x-symphony-arm"] == "anthropic/claude-3-5-haiku-latest"


@pytest.mark.parametrize(
    ("token", "nonce", "body", "path", "status"),
    [
        ("wrong-token-wrong-token-wrong", None, None, "chat/completions", 401),
        (TOKEN, "forged", None, "chat/completions", 409),
        (TOKEN, None, {**REQUEST, "max_tokens": 4000}, "chat/completions", 403),
        (TOKEN, None, None, "route/execute", 403),
    ],
    ids=["wrong token", "another nonce", "another body", "another path"],
)
def test_a_dispatch_is_refused_unless_it_is_the_claimed_jobs_own(
    stack: ProxyStack, token: str, nonce: str | None, body: object, path: str, status: int
) -> None:
    job_id = create(stack)
    claimed = claim(stack, job_id)
    answer = dispatch(stack, job_id, nonce or claimed, token=token, body=body, path=path)
    assert answer.status_code == status, answer.text
    assert stack.sim_app.total() == 0


def test_an_unclaimed_job_and_a_revoked_key_are_refused(stack: ProxyStack) -> None:
    queued = create(stack)
    assert dispatch(stack, queued, "anything").status_code == 409
    key = stack.issue_key("short-lived")
    job_id = create(stack, key=key)
    nonce = claim(stack, job_id)
    revoke_key(stack.redis, key.split("-")[2], wall_ms())
    time.sleep(0.6)  # a replica re-reads a key after 0.5 s (proxy.edge.key_cache)
    answer = dispatch(stack, job_id, nonce)
    assert answer.status_code == 401 and "revoked" in answer.json()["error"]["message"]
    assert stack.sim_app.total() == 0


def test_without_a_dispatcher_token_no_dispatch_is_accepted(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server) as plain:
        job_id = create(plain)
        answer = dispatch(plain, job_id, claim(plain, job_id))
        assert answer.status_code == 401 and "DISPATCHER_TOKEN" in answer.json()["error"]["message"]


def _record(stack: ProxyStack, job_id: str) -> Job:
    async def main() -> Job | None:
        client = aioredis.Redis.from_url(stack.settings.redis_url)
        try:
            return await JobStore(client).get(job_id)
        finally:
            await client.aclose()

    job = asyncio.run(main())
    assert job is not None
    return job


def _released(stack: ProxyStack, job_id: str) -> bool:
    async def main() -> bool:
        client = aioredis.Redis.from_url(stack.settings.redis_url)
        try:
            return await JobStore(client).release(job_id, "d1", wall_ms())
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_a_dispatch_refused_before_any_provider_is_withdrawn_and_never_admitted_again(
    stack: ProxyStack,
) -> None:
    """The app is at its rate: the proxy answers 429 without trying a provider, so the job did not run."""
    key = stack.issue_key("one-a-minute", rpm=1)
    job_id = create(stack, key=key)
    own = httpx.post(f"{stack.base_url}/chat/completions", json=REQUEST, headers=bearer(key), timeout=30)
    assert own.status_code == 200, own.text  # the app's one request this minute
    nonce = claim(stack, job_id)
    refused = dispatch(stack, job_id, nonce)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "app_rate_limited"
    withdrawn = _record(stack, job_id)
    assert (withdrawn.state, withdrawn.admitted_ms, withdrawn.nonce) == ("running", None, "")
    for sent_nonce in (nonce, ""):  # the same dispatch again, and one matching the cleared nonce
        again = dispatch(stack, job_id, sent_nonce)
        assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_admitted"
    assert _released(stack, job_id) and _record(stack, job_id).state == "queued"
    assert stack.sim_app.total() == 1  # only the app's own request reached a provider


def test_a_providers_own_refusal_keeps_the_admission(stack: ProxyStack) -> None:
    """The provider answered 429: the job reached it, so it may have run and is never sent again."""
    httpx.put(f"{stack.sim.url}/admin/limits/openai", json={"tpm": 1}).raise_for_status()
    job_id = create(stack, providers=["openai"])
    refused = dispatch(stack, job_id, claim(stack, job_id))
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] not in NOT_RUN and stack.sim_app.answers[("openai", 429)] >= 1
    assert _record(stack, job_id).admitted_ms is not None
    assert not _released(stack, job_id)


def test_a_refusal_that_is_not_about_room_keeps_the_admission(stack: ProxyStack) -> None:
    """A 400 before any provider (the request asks what no candidate can do) will not change by waiting."""
    body = {**REQUEST, "temperature": 1.5}  # above Anthropic's range
    job_id = create(stack, request=body, providers=["anthropic"])
    refused = dispatch(stack, job_id, claim(stack, job_id), body=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] not in NOT_RUN
    assert _record(stack, job_id).admitted_ms is not None
    assert not _released(stack, job_id) and stack.sim_app.total() == 0
