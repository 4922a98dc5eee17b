"""The chaos gate: 30% 429s and 10% 5xx on two providers and a slow first token on a third.

2,000 requests (a third streamed) go to ``model=auto`` through the proxy in front of
the real simulator. At least 99.5% must succeed, and every attempt the simulator
saw must be a usage event: per provider the simulator's count of answers equals
the proxy's count of usage events, 429s and 5xx included, and every decision's
attempts form one chain (numbered 1..n, each ``fallback_from`` the one before).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

import httpx
import pytest

from symphony.events import Usage
from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack

REQUESTS = 2000
CONCURRENCY = 32
FLAKY = ("openai", "anthropic")
SLOW = "gemini"
SLOW_TTFT_MS = 3000
TTFT_LIMIT_MS = 400
BODY = {"model": "auto", "messages": [{"role": "user", "content": "chaos, please"}], "max_tokens": 8}


async def _one(client: httpx.AsyncClient, index: int) -> bool:
    """One request; True when the client got a whole answer."""
    stream = index % 3 == 0
    try:
        if not stream:
            answer = await client.post("/v1/chat/completions", json=BODY)
            return answer.status_code == 200 and answer.json()["choices"][0]["message"] is not None
        async with client.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as answer:
            text = (await answer.aread()).decode()
            return (
                answer.status_code == 200 and text.rstrip().endswith("data: [DONE]") and '"error"' not in text
            )
    except httpx.HTTPError:
        return False


async def _run(base_url: str, auth: dict[str, str]) -> list[bool]:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30, headers=auth) as client:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def bounded(index: int) -> bool:
            async with gate:
                return await _one(client, index)

        return list(await asyncio.gather(*(bounded(i) for i in range(REQUESTS))))


@pytest.mark.timeout(120)
def test_chaos_gate(redis_server: RedisServer) -> None:
    with ProxyStack(redis_server, ttft_limit_ms=TTFT_LIMIT_MS) as stack:
        for provider in FLAKY:
            stack.faults(provider, rate_429=0.3, rate_5xx=0.1)
        stack.faults(SLOW, slow_ttft_ms=SLOW_TTFT_MS)
        results = asyncio.run(_run(stack.url, stack.auth))
        events = stack.events()
        # Abandoned slow answers end upstream a little later; wait for the simulator's count.
        deadline = time.monotonic() + SLOW_TTFT_MS / 1000 + 5
        while stack.sim_app.total() < len(events.usages) and time.monotonic() < deadline:
            time.sleep(0.1)
        answers = stack.sim_app.answers

    assert sum(results) / REQUESTS >= 0.995, f"{REQUESTS - sum(results)} of {REQUESTS} requests failed"
    assert len(events.decisions) == REQUESTS

    used: Counter[tuple[str, str]] = Counter((u.provider, u.status) for u in events.usages)
    sim_by_provider: Counter[str] = Counter()
    for (provider, _status), count in answers.items():
        sim_by_provider[provider] += count
    assert sim_by_provider == Counter(u.provider for u in events.usages)
    for provider in FLAKY:
        # An answer the simulator sent after the proxy's first-token limit ran out is the proxy's
        # "timeout" (the proxy had given up), so under load a 429 or 5xx may be counted as one.
        timed_out = used[(provider, "timeout")]
        assert used[(provider, "429")] <= answers[(provider, 429)] <= used[(provider, "429")] + timed_out
        assert used[(provider, "429")] > 0
        server_errors = sum(
            count for (p, status), count in answers.items() if p == provider and status >= 500
        )
        assert used[(provider, "5xx")] <= server_errors <= used[(provider, "5xx")] + timed_out
    # A 429 cools its provider for a second, so each flaky one sees a few dozen attempts.
    assert sum(used[(provider, "5xx")] for provider in FLAKY) > 0
    assert used[(SLOW, "timeout")] == sim_by_provider[SLOW] > 0
    assert used[(SLOW, "ok")] == 0

    chains: dict[str, list[Usage]] = defaultdict(list)
    for usage in events.usages:
        chains[usage.decision_id].append(usage)
    for decision in events.decisions:
        chain = sorted(chains[decision.decision_id], key=lambda u: u.attempt)
        assert [u.attempt for u in chain] == list(range(1, len(chain) + 1))
        arms = [f"{u.provider}/{u.model}" for u in chain]
        assert [u.fallback_from for u in chain] == ["", *arms[:-1]]
        failed = [u for u in chain if u.status != "ok"]
        assert decision.fallbacks == [f"{u.provider}/{u.model}" for u in failed]
        assert decision.fallback_statuses == [u.status for u in failed]
        assert all(u.status != "ok" for u in chain[:-1])
    fell_back = sum(bool(d.fallbacks) for d in events.decisions)
    assert fell_back > 0
