"""An app's daily budget holds across proxy replicas under concurrent load, within one request's worth."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import openai

from proxy.candidates import prompt_tokens
from symphony.app_keys import USD_MICROS
from symphony.clock import wall_ms
from symphony.quotas import DAY_MS
from symphony.redis_server import RedisServer
from tests.proxy_stack import CATALOG, ProxyStack

APP = "budgeted"
BUDGET_USD = 0.005  # about two dozen requests at their estimate, more at their actual cost
MAX_TOKENS = 64
REQUESTS = 240
CONCURRENCY = 24
MESSAGES: Any = [{"role": "user", "content": "Write two lines about budgets."}]


def one_request_worth() -> float:
    """The most one request can cost: the dearest arm, a prompt a little above the estimate, every token."""
    prompt = prompt_tokens({"messages": MESSAGES}) + 8
    return max(
        price.cost_usd(prompt, MAX_TOKENS)
        for spec in CATALOG.providers.values()
        for price in spec.models.values()
    )


def send(index: int, urls: list[str], key: str) -> str:
    """One request through replica ``index % 3``: "ok", or the refusal's code (or the error's name)."""
    url = urls[index % len(urls)]
    kind = index % 4
    try:
        if kind == 3:
            claude = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
            claude.messages.create(model="auto", max_tokens=MAX_TOKENS, messages=MESSAGES)
            return "ok"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        if kind == 2:
            chunks = client.chat.completions.create(
                model="auto", messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
            )
            assert [chunk for chunk in chunks if chunk.choices]  # read to the end
        else:
            client.chat.completions.create(model="auto", messages=MESSAGES, max_tokens=MAX_TOKENS)
        return "ok"
    except openai.RateLimitError as refused:
        assert int(refused.response.headers["retry-after"]) >= 1
        assert "UTC day" in refused.message
        return str(refused.code)
    except anthropic.RateLimitError as refused:
        assert int(refused.response.headers["retry-after"]) >= 1
        return (
            "budget_exhausted"
            if "has spent its budget for this UTC day" in refused.message
            else refused.message
        )


def test_a_daily_budget_holds_across_three_replicas_under_concurrent_load(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server, app=APP, limits={"budget_usd_day": BUDGET_USD}) as stack:
        urls = [stack.url, stack.add_replica().url, stack.add_replica().url]
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            outcomes = list(pool.map(lambda i: send(i, urls, stack.key), range(REQUESTS)))
        time.sleep(0.5)  # streams' settlements are made when they end, in the background
        bucket = f"quota:{{app:{APP}}}:usd_micros:1d:{wall_ms() // DAY_MS}"
        settled_micros = int(stack.redis.get(bucket) or 0)
        events = stack.events()

    assert set(outcomes) <= {"ok", "budget_exhausted"}, sorted(set(outcomes))
    served, refused = outcomes.count("ok"), outcomes.count("budget_exhausted")
    assert served >= 10 and refused >= REQUESTS // 4, (served, refused)
    usages = [u for u in events.usages if u.app == APP]
    spent = sum(u.cost_usd for u in usages)
    assert len({u.decision_id for u in usages if u.status == "ok"}) == served
    assert spent <= BUDGET_USD + one_request_worth(), (spent, BUDGET_USD)
    assert spent >= BUDGET_USD / 2  # the budget was used, not refused from the start
    # What Redis holds is what was spent (each settlement rounds to a micro-dollar).
    assert abs(settled_micros - spent * USD_MICROS) <= len(usages)


def test_an_apps_request_rate_counts_each_request_once_whatever_its_fallbacks(
    redis_server: RedisServer,
) -> None:
    rpm = 6
    with ProxyStack(redis_server, app="steady", limits={"rpm": rpm}) as stack:
        other = stack.add_replica()
        stack.faults("openai", rate_5xx=1.0)  # most requests go to openai first, then fall back to grok
        body = {
            "messages": MESSAGES,
            "max_tokens": 8,
            "constraints": {"allowed_providers": ["openai", "grok"]},
        }
        for index in range(rpm):
            url = (stack.url, other.url)[index % 2]
            answer = httpx.post(f"{url}/v1/route/execute", json=body, headers=stack.auth, timeout=30)
            assert answer.status_code == 200, answer.text
        refused = httpx.post(f"{other.url}/v1/route/execute", json=body, headers=stack.auth, timeout=30)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "app_rate_limited" and f"{rpm} requests per minute" in error["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        usages = stack.events().usages
    assert len(usages) > rpm  # some requests took two attempts, and still counted once
