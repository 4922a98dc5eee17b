"""Authentication at the proxy: app keys on every inbound API, as each SDK expects it refused."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis

from cli.supervisor import AUTH_DISABLED_WARNING, Stack
from proxy.app import create_app
from proxy.edge.auth_failures import LOOKUPS_WHILE_BLOCKED, AuthFailures
from proxy.edge.key_cache import TTL_S
from simulator import BackgroundServer
from symphony.app_keys import revoke_key, split_key
from symphony.clock import wall_ms
from symphony.redis_server import RedisServer
from symphony.settings import Settings
from tests.proxy_stack import ProxyStack, bearer

HI: Any = [{"role": "user", "content": "hi"}]
CHAT = {"model": "auto", "messages": HI, "max_tokens": 4}
UNKNOWN = "sk-sym-abcdefgh-" + "A" * 43  # well formed, never issued
ENDPOINTS = [
    ("POST", "/v1/chat/completions", CHAT),
    ("GET", "/v1/models", None),
    ("POST", "/v1/messages", {**CHAT, "max_tokens": 4}),
    ("POST", "/v1/route/execute", {"messages": HI, "max_tokens": 4}),
    ("POST", "/v1/feedback", {"decision_id": "d", "score": 1}),
    ("GET", "/v1/no-such-path", None),
]


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[ProxyStack]:
    # Many failures come from one address here; the limiter has its own test.
    with ProxyStack(redis_server, traffic_split=0.0, auth_failures_per_minute=10_000) as running:
        yield running


def call(base: str, method: str, path: str, body: object, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(method, f"{base}{path}", json=body, headers=headers, timeout=10)


def test_every_api_but_health_and_metrics_needs_a_key(stack: ProxyStack) -> None:
    revoked = stack.issue_key("gone")
    revoke_key(stack.redis, split_key(revoked)[0], wall_ms())  # type: ignore[index]
    bad = {
        "missing": {},
        "not bearer": {"authorization": f"Basic {stack.key}"},
        "empty bearer": {"authorization": "Bearer"},
        "malformed": bearer("sk-proj-not-a-symphony-key"),
        "unknown": bearer(UNKNOWN),
        "wrong secret": bearer(stack.key[:-4] + "AAAA"),
        "revoked": bearer(revoked),
        "two keys": {**bearer(stack.key), "x-api-key": UNKNOWN},
    }
    for method, path, body in ENDPOINTS:
        for case, headers in bad.items():
            answer = call(stack.url, method, path, body, headers)
            assert answer.status_code == 401, (path, case, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            if path == "/v1/messages":
                assert answer.json()["error"]["type"] == "authentication_error"
            else:
                assert answer.json()["error"]["code"] in (
                    "missing_api_key",
                    "invalid_api_key",
                    "revoked_api_key",
                )
            for secret in (stack.key, revoked, UNKNOWN, "sk-proj-not-a-symphony-key"):
                assert secret not in answer.text  # never repeated, at most its public prefix
    for path in ("/health", "/metrics"):
        assert httpx.get(f"{stack.url}{path}").status_code == 200
    assert call(stack.url, "GET", "/v1/models", None, {"x-api-key": stack.key}).status_code == 200
    assert stack.events().decisions == []


@pytest.mark.parametrize("key", ["sk-proj-not-a-symphony-key", UNKNOWN, "revoked"])
def test_both_sdks_raise_their_authentication_error(stack: ProxyStack, key: str) -> None:
    if key == "revoked":
        key = stack.issue_key("gone")
        assert stack.openai(key).models.list().data  # it works until it is revoked
        revoke_key(stack.redis, split_key(key)[0], wall_ms())  # type: ignore[index]
        time.sleep(TTL_S + 0.1)
    with pytest.raises(openai.AuthenticationError) as refused:
        stack.openai(key).chat.completions.create(model="auto", messages=HI, max_tokens=4)
    assert refused.value.code in ("invalid_api_key", "revoked_api_key")
    with pytest.raises(openai.AuthenticationError):
        stack.openai(key).models.list()
    with pytest.raises(anthropic.AuthenticationError) as refused_too:
        stack.anthropic(key).messages.create(model="auto", max_tokens=4, messages=HI)
    assert refused_too.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError):  # the older header
        anthropic.Anthropic(base_url=stack.url, auth_token=None, api_key=None, max_retries=0).messages.create(
            model="auto",
            max_tokens=4,
            messages=HI,
            extra_headers={"x-api-key": key},
        )


def test_a_model_outside_the_allow_list_is_403_and_auto_keeps_to_the_list(stack: ProxyStack) -> None:
    key = stack.issue_key("narrow", models=("gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"))
    client, claude = stack.openai(key), stack.anthropic(key)
    for model in ("gpt-4o", "openai/gpt-4o", "sonar"):
        with pytest.raises(openai.PermissionDeniedError) as denied:
            client.chat.completions.create(model=model, messages=HI, max_tokens=4)
        assert denied.value.code == "model_not_allowed" and "narrow" in denied.value.message
        with pytest.raises(anthropic.PermissionDeniedError):
            claude.messages.create(model=model, max_tokens=4, messages=HI)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=4).model
    for _ in range(6):
        client.chat.completions.create(model="auto", messages=HI, max_tokens=4)
    listed = {model.id for model in client.models.list()}
    assert listed == {
        "auto",
        "openai/gpt-4o-mini",
        "gpt-4o-mini",
        "anthropic/claude-3-5-haiku-latest",
        "claude-3-5-haiku-latest",
    }
    native = httpx.post(
        f"{stack.base_url}/route/execute",
        json={"messages": HI, "overrides": {"provider": "grok"}},
        headers=bearer(key),
    )
    assert native.status_code == 403 and native.json()["error"]["code"] == "model_not_allowed"
    nothing = stack.issue_key("none-left", models=("no-such-model",))
    with pytest.raises(openai.PermissionDeniedError):
        stack.openai(nothing).chat.completions.create(model="auto", messages=HI)
    decisions = [d for d in stack.events().decisions if d.app == "narrow"]
    assert len(decisions) == 7
    assert all(
        set(d.candidates) <= {"openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"} for d in decisions
    )


def test_revocation_stops_a_key_on_every_replica_within_a_second(stack: ProxyStack) -> None:
    other = stack.add_replica()
    replicas = [stack.url, other.url]
    key = stack.issue_key("soon-revoked")

    def status(url: str) -> int:
        return httpx.get(f"{url}/v1/models", headers=bearer(key), timeout=5).status_code

    for _ in range(3):  # both replicas have the key cached
        assert [status(url) for url in replicas] == [200, 200]
    revoked_at = time.monotonic()
    revoke_key(stack.redis, split_key(key)[0], wall_ms())  # type: ignore[index]
    stopped: dict[str, float] = {}
    while len(stopped) < len(replicas) and time.monotonic() - revoked_at < 3:
        for url in replicas:
            if url not in stopped and status(url) == 401:
                stopped[url] = time.monotonic() - revoked_at
        time.sleep(0.01)
    assert set(stopped) == set(replicas), stopped
    assert max(stopped.values()) < 1.0, stopped
    assert [status(url) for url in replicas] == [401, 401]  # and it stays refused


def wait_for_mid_minute() -> None:
    """Start a test of the per-minute limiter well inside a minute (its windows are fixed minutes)."""
    into = (wall_ms() % 60_000) / 1000
    if into > 55:  # the test takes about a second
        time.sleep(60.5 - into)


def test_failed_authentication_is_limited_per_address_across_replicas(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server, auth_failures_per_minute=5) as stack:
        other = stack.add_replica()
        wait_for_mid_minute()
        statuses = [call(stack.url, *ENDPOINTS[0], bearer(UNKNOWN)).status_code for _ in range(8)]
        assert statuses == [401] * 5 + [429] * 3
        refused = call(stack.url, *ENDPOINTS[0], bearer(UNKNOWN))
        assert refused.json()["error"]["code"] == "too_many_auth_failures"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # The address's guesses now get 429, its valid key is still served; the other replica learns
        # the block from Redis at its next failure, and serves the valid key too.
        assert call(stack.url, "GET", "/v1/models", None, stack.auth).status_code == 200
        assert call(other.url, "GET", "/v1/models", None, stack.auth).status_code == 200
        assert call(other.url, "GET", "/v1/models", None, bearer(UNKNOWN)).status_code == 429
        assert call(other.url, "GET", "/v1/models", None, stack.auth).status_code == 200
        claude = anthropic.Anthropic(base_url=other.url, api_key=stack.key, max_retries=0)
        assert claude.messages.create(model="auto", max_tokens=4, messages=HI).content


def key_reads(client: redis.Redis, prefixes: list[str]) -> int:
    """App key records of these prefixes read since the slow log (logging every command) was reset."""
    logged: list[dict[str, Any]] = client.slowlog_get(100_000)  # type: ignore[assignment]
    wanted = {f"symphony:appkeys:{prefix}".encode() for prefix in prefixes}
    return sum(1 for entry in logged if entry["command"].split()[:2] in ([b"HGETALL", w] for w in wanted))


def test_a_blocked_address_gets_one_guess_per_key_and_few_reads(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server, auth_failures_per_minute=2) as stack:
        wait_for_mid_minute()
        assert call(stack.url, "GET", "/v1/models", None, stack.auth).status_code == 200
        statuses = [call(stack.url, "GET", "/v1/models", None, bearer(UNKNOWN)).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        # A wrong secret for a key the replica knows is one guess: 429, and that key's tries are spent
        # for the rest of the block, the right secret included (a guess is never answered twice).
        guess = stack.key[:-4] + ("AAAA" if not stack.key.endswith("AAAA") else "BBBB")
        assert call(stack.url, "GET", "/v1/models", None, bearer(guess)).status_code == 429
        assert call(stack.url, "GET", "/v1/models", None, stack.auth).status_code == 429
        # A valid key this replica never read is looked up (one of the block's few reads) and served.
        fresh = stack.issue_key("fresh")
        assert call(stack.url, "GET", "/v1/models", None, bearer(fresh)).status_code == 200
        assert call(stack.url, "GET", "/v1/models", None, bearer(fresh)).status_code == 200
        # Unknown prefixes use up the rest of the reads, then get 429 without any Redis read.
        prefixes = [f"{n:08d}" for n in range(40)]
        stack.redis.config_set("slowlog-max-len", 100_000)
        stack.redis.config_set("slowlog-log-slower-than", 0)
        stack.redis.slowlog_reset()
        guesses = [bearer(f"sk-sym-{prefix}-{'A' * 43}") for prefix in prefixes]
        answers = [call(stack.url, "GET", "/v1/models", None, headers).status_code for headers in guesses]
        assert answers == [429] * 40
        assert key_reads(stack.redis, prefixes) == LOOKUPS_WHILE_BLOCKED - 1
        late = stack.issue_key("late")
        assert call(stack.url, "GET", "/v1/models", None, bearer(late)).status_code == 429


def test_failure_windows_are_fixed_minutes_shared_through_redis(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    import redis.asyncio as aioredis

    now = [60_000 * 1000 + 10_000]

    async def scenario() -> list[float | None]:
        client = aioredis.Redis.from_url(redis_server.url)
        one = AuthFailures(lambda: client, 2, now_ms=lambda: now[0])
        two = AuthFailures(lambda: client, 2, now_ms=lambda: now[0])
        seen = [await one.failed("10.0.0.1"), await two.failed("10.0.0.1"), await one.failed("10.0.0.2")]
        seen.append(await two.failed("10.0.0.1"))  # the third from .1: over the limit, on either replica
        seen += [two.blocked_for_s("10.0.0.1"), one.blocked_for_s("10.0.0.1"), two.blocked_for_s("10.0.0.2")]
        now[0] += 50_000  # the next minute
        seen += [two.blocked_for_s("10.0.0.1"), await one.failed("10.0.0.1")]
        await client.aclose()
        return seen

    assert asyncio.run(scenario()) == [None, None, None, 50.0, 50.0, None, None, None, None]
    assert all(0 < redis_client.pttl(k) <= 120_000 for k in redis_client.scan_iter("symphony:authfail:*"))


def test_header_fields_too_large_are_431(stack: ProxyStack) -> None:
    huge = {**stack.auth, "x-padding": "p" * (17 << 10)}
    for method, path, body in ENDPOINTS[:3]:
        answer = call(stack.url, method, path, body, huge)
        assert answer.status_code == 431, (path, answer.text)
        if path == "/v1/messages":
            assert answer.json()["type"] == "error"
        else:
            assert answer.json()["error"]["code"] == "request_header_fields_too_large"
    with pytest.raises(openai.APIStatusError) as too_large:
        stack.openai(default_headers={"x-padding": "p" * (17 << 10)}).models.list()
    assert too_large.value.status_code == 431
    assert (
        call(stack.url, "GET", "/v1/models", None, {**stack.auth, "x-padding": "p" * 1000}).status_code == 200
    )


def test_when_redis_is_gone_known_keys_serve_or_fail_closed(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server, quota_fail_mode="closed") as closed:
        opened = BackgroundServer(create_app(closed.settings.model_copy(update={"quota_fail_mode": "open"})))
        opened.start()
        try:
            for url in (closed.url, opened.url):
                assert call(url, "GET", "/v1/models", None, closed.auth).status_code == 200
            redis_server.stop()
            time.sleep(TTL_S + 0.1)
            assert call(opened.url, "GET", "/v1/models", None, closed.auth).status_code == 200
            unavailable = call(closed.url, "GET", "/v1/models", None, closed.auth)
            assert (
                unavailable.status_code == 503 and unavailable.json()["error"]["code"] == "auth_unavailable"
            )
            assert call(opened.url, "GET", "/v1/models", None, bearer(UNKNOWN)).status_code == 503
        finally:
            opened.stop()
            redis_server.start()


def test_auth_disabled_serves_without_a_key_and_warns_at_every_start(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="proxy.app"),
        ProxyStack(redis_server, auth_disabled=True) as stack,
    ):
        answer = call(stack.url, *ENDPOINTS[0], {"x-symphony-app": "local"})
        assert answer.status_code == 200
        (decision,) = stack.events().decisions
    assert decision.app == "local"
    assert any("AUTH_DISABLED=true" in record.getMessage() for record in caplog.records)
    said: list[str] = []
    up = Stack(Settings(redis_url=redis_server.url, auth_disabled=True), say=said.append)
    client = redis.Redis.from_url(redis_server.url)
    up._ensure_dev_key(client)  # what `symphony up` does before it starts the proxy
    client.close()
    assert said == [AUTH_DISABLED_WARNING] and up.dev_key is None
