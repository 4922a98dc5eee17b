"""Quotas through the proxy: 429s with retry-after, caps reconciled from provider reports, Redis outages."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis

from cli.load import LoadConfig, run_load
from symphony.quotas import bucket_values, load_quota_policy
from symphony.redis_server import RedisServer
from tests.engineutil import Engine
from tests.proxy_stack import ProxyStack

PINNED = "openai/gpt-4o-mini"


def tiny_policy(tmp_path: Path, rpm: int) -> Path:
    """The shipped quota policy with openai's requests per minute cut to ``rpm``."""
    data = json.loads(load_quota_policy.__wrapped__().model_dump_json())  # type: ignore[attr-defined]
    data["providers"]["openai"]["caps"]["requests"]["minute"] = rpm
    path = tmp_path / "quotas.json"
    path.write_text(json.dumps(data))
    return path


def ask(client: openai.OpenAI) -> None:
    client.chat.completions.create(model=PINNED, messages=[{"role": "user", "content": "hi"}], max_tokens=8)


def test_over_quota_is_a_429_with_retry_after_that_both_sdks_raise(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with ProxyStack(redis_server, quota_policy_file=tiny_policy(tmp_path, 3)) as stack:
        client = stack.openai()
        for _ in range(3):
            ask(client)
        with pytest.raises(openai.RateLimitError) as raised:
            ask(client)
        assert raised.value.body["code"] == "quota_exhausted"  # type: ignore[index]
        assert "openai requests per minute: 3 of 3 used" in raised.value.message
        assert 1 <= int(raised.value.response.headers["retry-after"]) <= 60

        claude = stack.anthropic()
        with pytest.raises(anthropic.RateLimitError) as refused:
            claude.messages.create(model=PINNED, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        assert "retry-after" in refused.value.response.headers
        assert stack.sim_app.answers[("openai", 200)] == 3  # the refused ones never reached the provider


def test_auto_routing_skips_an_arm_over_quota(redis_server: RedisServer, tmp_path: Path) -> None:
    with ProxyStack(redis_server, quota_policy_file=tiny_policy(tmp_path, 1)) as stack:
        client = stack.openai()
        for _ in range(30):
            client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "x"}], max_tokens=4
            )
        assert stack.sim_app.answers[("openai", 200)] <= 1


def test_a_gemini_429_naming_the_models_quota_cools_it_and_a_bare_429_does_not(
    redis_server: RedisServer,
) -> None:
    gemini = "gemini/gemini-2.5-flash"
    with ProxyStack(redis_server) as stack:
        client = stack.openai()

        def ask_gemini() -> openai.RateLimitError:
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(
                    model=gemini, messages=[{"role": "user", "content": "hi"}], max_tokens=8
                )
            return refused.value

        # An injected 429 names no quota: one of them is no reason to stop sending.
        stack.faults("gemini", rate_429=1.0)
        ask_gemini()
        ask_gemini()
        assert stack.sim_app.answers[("gemini", 429)] == 2
        stack.faults("gemini", rate_429=0.0)

        # The real limit's 429 carries a QuotaFailure for the model: the model is cooled for its retryDelay.
        httpx.put(f"{stack.sim.url}/admin/limits/gemini", json={"tpm": 1}).raise_for_status()
        ask_gemini()
        assert stack.sim_app.answers[("gemini", 429)] == 3
        cooled = ask_gemini()
        assert stack.sim_app.answers[("gemini", 429)] == 3  # refused by the proxy, not sent
        assert f"{gemini} answered 429: its rate limit is used up" in cooled.message
        assert 1 <= int(cooled.response.headers["retry-after"]) <= 60


def test_reported_lower_limit_is_reconciled_and_then_never_exceeded(
    redis_server: RedisServer, engine: Engine
) -> None:
    engine.start()
    with ProxyStack(redis_server) as stack:
        httpx.put(f"{stack.sim.url}/admin/limits/openai", json={"rpm": 12}).raise_for_status()
        client = stack.openai()
        for _ in range(4):
            ask(client)  # every answer reports x-ratelimit-limit-requests: 12
        cap_key = "symphony:caps:{openai}:requests:minute"
        deadline = time.monotonic() + 30
        while stack.redis.get(cap_key) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stack.redis.get(cap_key) == b"12"

        refused = 0
        for _ in range(20):
            try:
                ask(client)
            except openai.RateLimitError as exc:
                assert exc.body["code"] == "quota_exhausted"  # type: ignore[index]
                refused += 1
        assert stack.sim_app.answers[("openai", 429)] == 0  # the provider never had to refuse
        assert stack.sim_app.answers[("openai", 200)] == 12
        assert refused == 12

    log = engine.log.read_text()
    policy = load_quota_policy().providers["openai"].caps["requests"]["minute"]
    diff = log.index(
        f"policy_vs_observed=diff provider=openai window=minute metric=requests policy={policy} observed=12"
    )
    adjust = log.index(
        f"runtime_cap_adjustment provider=openai window=minute metric=requests from={policy} to=12"
    )
    assert diff < adjust


def metric(text: str, name: str) -> int:
    """One counter from the proxy's Prometheus text."""
    return next(int(float(line.split()[1])) for line in text.splitlines() if line.startswith(f"{name} "))


def quota_state(client: redis.Redis) -> dict[str, int]:
    """Every bucket of every bucketed window (``<window key>:<bucket>``): first-use windows left out."""
    return {
        f"{key.decode()}:{bucket}": value
        for key in client.scan_iter("quota:*")
        if not client.hexists(key, "start")
        for bucket, value in bucket_values(client.hgetall(key)).items()
    }


def test_redis_outage_under_load_fail_open_keeps_serving_and_keys_stay_consistent(
    persistent_redis: RedisServer,
) -> None:
    with ProxyStack(persistent_redis, quota_fail_mode="open") as stack:
        config = LoadConfig(
            rate=40,
            duration=6.0,
            tasks={"chat": 1.0},
            max_tokens=16,
            feedback_share=0.0,
            seed=5,
            api_key=stack.key,
        )
        outcome: dict[str, object] = {}
        loader = threading.Thread(
            target=lambda: outcome.update(report=run_load(stack.url, "", config, say=lambda _: None))
        )
        loader.start()
        time.sleep(1.5)
        persistent_redis.stop()
        time.sleep(2.0)
        persistent_redis.start()
        loader.join(timeout=60)
        metrics = httpx.get(f"{stack.url}/metrics").text
        local_tokens = metric(metrics, "symphony_quota_local_tokens_total")
        local_grants = metric(metrics, "symphony_quota_local_grants_total")
        events = stack.events()

    report = outcome["report"]
    assert report.success_share >= 0.99, report.failed  # type: ignore[attr-defined]
    assert local_grants > 0  # the outage really happened under load
    client = stack.redis = redis.Redis.from_url(persistent_redis.url)
    state = quota_state(client)
    assert all(value >= 0 for value in state.values())
    assert all(client.pttl(key.rsplit(":", 1)[0]) > 0 for key in state)
    # Every token the Redis buckets hold was really used; local grants are the only tokens missing.
    # The emitter retries a batch whose reply the outage swallowed: the stream may hold an
    # event twice (ClickHouse keeps it once, by event_id), so count each event once here too.
    usages = list({u.event_id: u for u in events.usages}.values())
    used = sum(u.input_tokens + u.output_tokens for u in usages)
    in_redis = sum(v for k, v in state.items() if ":tokens:day:" in k)
    assert in_redis == used - local_tokens
    requests_in_redis = sum(v for k, v in state.items() if ":requests:day:" in k)
    assert requests_in_redis == len(usages) - local_grants


@pytest.mark.parametrize(("mode", "status"), [("open", 200), ("closed", 429)])
def test_redis_out_of_memory_is_an_outage_of_the_quota_store_not_a_500(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, mode: str, status: int
) -> None:
    """Redis at its maxmemory (noeviction) answers but refuses every write, the reservation script's
    included: the quota gate takes that as Redis away (its fail mode decides the answer) and comes back
    when Redis takes writes again; nothing is logged as an error. It was a 500 and an unread task error."""
    body = {"model": PINNED, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    with ProxyStack(redis_server, quota_fail_mode=mode) as stack:

        def post() -> httpx.Response:
            return httpx.post(f"{stack.base_url}/chat/completions", json=body, headers=stack.auth, timeout=10)

        def degraded() -> int:
            return metric(httpx.get(f"{stack.url}/metrics").text, "symphony_quota_degraded")

        assert post().status_code == 200
        stack.redis.config_set("maxmemory-policy", "noeviction")
        stack.redis.config_set("maxmemory", 1)
        try:
            full = [post() for _ in range(2)]
        finally:
            stack.redis.config_set("maxmemory", 0)
        assert [r.status_code for r in full] == [status] * 2, full[-1].text
        if mode == "closed":  # the fail-closed refusal, as for Redis stopped
            assert "the quota store is unreachable (fail-closed)" in full[-1].json()["error"]["message"]
        else:  # served on the local limiter
            assert metric(httpx.get(f"{stack.url}/metrics").text, "symphony_quota_local_grants_total") == 2
        deadline = time.monotonic() + 15
        while degraded() and time.monotonic() < deadline:
            post()  # a request after the gate's pause tries Redis again
            time.sleep(0.2)
        assert degraded() == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert any("quota store unreachable (WritesRefused)" in r.getMessage() for r in caplog.records)


def test_a_request_whose_estimate_does_not_fit_the_budget_is_told_why_and_what_fits(
    redis_server: RedisServer,
) -> None:
    # Independent of the code: the catalog's price for the pinned arm, and the estimate's documented
    # rule (a message is 4 tokens plus its characters / 4; the answer is max_tokens).
    price = json.loads((Path(__file__).parents[2] / "policies" / "catalog.v1.json").read_text())
    mini = price["providers"]["openai"]["models"]["gpt-4o-mini"]
    prompt_tokens = len("hi") // 4 + 4
    budget_micros = 1000  # $0.0010 a UTC day

    def micros(max_tokens: int) -> float:
        return prompt_tokens * mini["input_per_mtok"] + max_tokens * mini["output_per_mtok"]

    fits = max(n for n in range(1, 5000) if math.ceil(micros(n)) <= budget_micros)
    with ProxyStack(redis_server, limits={"budget_usd_day": budget_micros / 1e6}) as stack:
        client = stack.openai()

        def ask_for(max_tokens: int) -> openai.types.chat.ChatCompletion:
            messages: Any = [{"role": "user", "content": "hi"}]
            return client.chat.completions.create(model=PINNED, messages=messages, max_tokens=max_tokens)

        for too_many in (4000, fits + 1):
            with pytest.raises(openai.RateLimitError) as raised:
                ask_for(too_many)
            message = raised.value.message
            assert raised.value.body["code"] == "budget_exhausted"  # type: ignore[index]
            assert "$0.0010 left of its $0.0010 budget for this UTC day" in message
            assert f"estimated at ${math.ceil(micros(too_many)) / 1e6:.4f} on its cheapest" in message
            assert f"{prompt_tokens} prompt tokens and {too_many:,} output tokens" in message
            assert f"max_tokens to at most {fits:,}" in message
            assert "more than the whole budget" in message
            to_midnight = 86_400 - (time.time() % 86_400)
            assert abs(int(raised.value.response.headers["retry-after"]) - to_midnight) <= 2
            assert f"(retry-after: {raised.value.response.headers['retry-after']} s)" in message
        assert ask_for(fits).choices  # the advice holds: that max_tokens is served
