"""The chaos gate: two fault schedules through the official OpenAI SDK, counted and asserted.

Each phase sends ``model=auto`` requests through ``openai.AsyncOpenAI`` (no SDK retries),
``CONCURRENCY`` in flight, every other one streamed, to the proxy in front of the real
simulator, with the default first-token limit (2.5 s):

1. **Every provider flaky** (20% 429, 10% 5xx, 3% hang on all seven): no provider can be
   cooled or ejected away, so the faults must be met and survived. At least 99% succeed,
   and the faults the simulator actually served are held to their injected shares.
2. **Three down, one slow** (OpenAI all 5xx, Anthropic all 429, Gemini +8 s to first token,
   Grok hangs): every request succeeds and p99 stays under 3.5 s, because the hanging and
   the slow provider are ejected after a few attempts.

Per phase the test prints and asserts the counts: attempts per provider and the faults
they met (the simulator's own count, held equal to the proxy's usage events), fallbacks,
successes. Every served decision reaches ClickHouse exactly once (a real engine).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import openai
import pytest

from symphony.events import Decision, Usage
from symphony.redis_server import RedisServer
from tests.engineutil import Engine
from tests.proxy_stack import CATALOG, Events, ProxyStack

CONCURRENCY = 12
PROVIDERS = tuple(CATALOG.providers)
MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "chaos, please"}]
MAX_TOKENS = 8
FLAKY = {"rate_429": 0.2, "rate_5xx": 0.1, "hang_rate": 0.03}
FLAKY_REQUESTS = 600
OUTAGE: dict[str, dict[str, float]] = {
    "openai": {"rate_5xx": 1.0},
    "anthropic": {"rate_429": 1.0},
    "gemini": {"slow_ttft_ms": 8000},
    "grok": {"hang_rate": 1.0},
}
OUTAGE_REQUESTS = 300
HANG_STATUSES = (0, 504)  # a hung request ends when the proxy hangs up


@dataclass
class Result:
    ok: bool
    seconds: float


async def _one(client: openai.AsyncOpenAI, index: int) -> Result:
    started = time.monotonic()
    try:
        if index % 2:
            stream = await client.chat.completions.create(
                model="auto", messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
            )
            chunks = [chunk async for chunk in stream]
            ok = bool(chunks) and chunks[-1].choices[0].finish_reason is not None
        else:
            answer = await client.chat.completions.create(
                model="auto", messages=MESSAGES, max_tokens=MAX_TOKENS
            )
            ok = answer.choices[0].message.content is not None
    except openai.OpenAIError:
        ok = False
    return Result(ok, time.monotonic() - started)


async def _run(stack: ProxyStack, requests: int) -> list[Result]:
    client = openai.AsyncOpenAI(base_url=stack.base_url, api_key=stack.key, max_retries=0, timeout=30)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def bounded(index: int) -> Result:
        async with gate:
            return await _one(client, index)

    try:
        return list(await asyncio.gather(*(bounded(i) for i in range(requests))))
    finally:
        await client.close()


@dataclass
class Counts:
    """What one phase did, from the simulator's side and the proxy's events."""

    attempts: Counter[str]  # per provider, as the simulator counted them
    answers: Counter[tuple[str, int]]  # (provider, HTTP status) the simulator sent
    successes: int
    fallbacks: int  # decisions with at least one failed attempt
    failed_attempts: int
    p99_s: float
    events: Events

    def faults(self, provider: str) -> dict[str, int]:
        mine = {status: n for (p, status), n in self.answers.items() if p == provider}
        return {
            "429": mine.get(429, 0),
            "5xx": sum(n for status, n in mine.items() if status >= 500 and status != 504),
            "hang": sum(mine.get(status, 0) for status in HANG_STATUSES),
        }

    def report(self, name: str, requests: int) -> str:
        lines = [
            f"chaos phase {name}: {self.successes}/{requests} succeeded, {self.fallbacks} fell back, "
            f"{self.failed_attempts} failed attempts, p99 {self.p99_s:.2f} s"
        ]
        for provider in PROVIDERS:
            lines.append(
                f"  {provider:<11} attempts {self.attempts[provider]:>4}  faults met {self.faults(provider)}"
            )
        return "\n".join(lines)


def _phase(redis_server: RedisServer, app: str, faults: dict[str, dict[str, float]], requests: int) -> Counts:
    with ProxyStack(redis_server, app=app, seed=11) as stack:
        for provider, spec in faults.items():
            stack.faults(provider, **spec)
        results = asyncio.run(_run(stack, requests))
        events = stack.events()
        mine = Events(
            [d for d in events.decisions if d.app == app], [u for u in events.usages if u.app == app]
        )
        # Abandoned slow answers end upstream later (Gemini's after its 8 s): wait for the simulator's count.
        deadline = time.monotonic() + 12
        while stack.sim_app.total() < len(mine.usages) and time.monotonic() < deadline:
            time.sleep(0.1)
        answers = Counter(stack.sim_app.answers)
    attempts: Counter[str] = Counter()
    for (provider, _status), n in answers.items():
        attempts[provider] += n
    seconds = sorted(r.seconds for r in results)
    return Counts(
        attempts=attempts,
        answers=answers,
        successes=sum(r.ok for r in results),
        fallbacks=sum(bool(d.fallbacks) for d in mine.decisions),
        failed_attempts=sum(u.status != "ok" for u in mine.usages),
        p99_s=seconds[math.ceil(0.99 * len(seconds)) - 1],
        events=mine,
    )


def _assert_events_match(counts: Counts, requests: int) -> None:
    """Every attempt the simulator saw is one usage event, and each decision's attempts form one chain."""
    events = counts.events
    assert len(events.decisions) == requests
    assert counts.attempts == Counter(u.provider for u in events.usages)
    used = Counter((u.provider, u.status) for u in events.usages)
    for provider in PROVIDERS:
        faults = counts.faults(provider)
        # An answer that arrives after the first-token limit is the proxy's timeout.
        timed_out = used[(provider, "timeout")]
        assert used[(provider, "429")] <= faults["429"] <= used[(provider, "429")] + timed_out
        assert used[(provider, "5xx")] <= faults["5xx"] <= used[(provider, "5xx")] + timed_out
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
    assert counts.fallbacks == sum(1 for d in events.decisions if d.fallbacks)
    assert counts.failed_attempts == sum(len(d.fallbacks) for d in events.decisions)


def _served(decisions: list[Decision]) -> set[str]:
    return {d.decision_id for d in decisions if d.served_by}


@pytest.mark.timeout(240)
def test_chaos_gate(redis_server: RedisServer, engine: Engine) -> None:
    flaky = _phase(redis_server, "chaos-flaky", dict.fromkeys(PROVIDERS, FLAKY), FLAKY_REQUESTS)
    print(flaky.report("every provider flaky", FLAKY_REQUESTS))
    outage = _phase(redis_server, "chaos-outage", OUTAGE, OUTAGE_REQUESTS)
    print(outage.report("three down, one slow", OUTAGE_REQUESTS))

    # 1. Every provider flaky: the faults are met, not cooled away, and survived.
    _assert_events_match(flaky, FLAKY_REQUESTS)
    assert flaky.successes >= math.ceil(0.99 * FLAKY_REQUESTS), flaky.report("flaky", FLAKY_REQUESTS)
    total = sum(flaky.attempts.values())
    met = Counter[str]()
    for provider in PROVIDERS:
        # The policy gives the lowest-ranked providers little traffic; fallbacks still reach each.
        assert flaky.attempts[provider] >= 5, f"{provider} was taken out of rotation"
        met.update(flaky.faults(provider))
    # Attempts meet faults at about their injected shares (429 20%, 5xx 10%, hang 3%): nothing
    # kept traffic away from them. Bounds are about 4 standard deviations wide.
    assert 0.15 * total <= met["429"] <= 0.25 * total, met
    assert 0.065 * total <= met["5xx"] <= 0.135 * total, met
    assert 0.01 * total <= met["hang"] <= 0.05 * total, met
    assert flaky.fallbacks >= 0.25 * FLAKY_REQUESTS
    assert flaky.failed_attempts == met["429"] + met["5xx"] + met["hang"]

    # 2. Three down, one slow: all served, quickly; the hanging and slow ones avoided after a few.
    _assert_events_match(outage, OUTAGE_REQUESTS)
    assert outage.successes == OUTAGE_REQUESTS, outage.report("outage", OUTAGE_REQUESTS)
    assert outage.p99_s < 3.5, outage.report("outage", OUTAGE_REQUESTS)
    for provider in ("gemini", "grok"):
        # The first wave (up to CONCURRENCY at once) and the ejections' trial attempts.
        assert 2 <= outage.attempts[provider] <= CONCURRENCY + 4, outage.report("outage", OUTAGE_REQUESTS)
    slow = [u for u in outage.events.usages if u.provider == "gemini"]
    assert [u.status for u in slow] == ["timeout"] * outage.attempts["gemini"]  # each met the +8 s
    assert 5 <= outage.attempts["openai"] <= CONCURRENCY + 10
    assert outage.faults("openai")["5xx"] == outage.attempts["openai"]
    assert outage.faults("anthropic")["429"] == outage.attempts["anthropic"] > 0
    served = Counter(d.served_by.split("/")[0] for d in outage.events.decisions)
    assert set(served) <= {"perplexity", "venice", "deepseek"}

    # Every served decision is in ClickHouse exactly once. The engine starts now, so the stream
    # still held every event when the phases read it (the engine trims what it has ingested).
    engine.start()
    expected = _served(flaky.events.decisions) | _served(outage.events.decisions)
    assert len(expected) == flaky.successes + outage.successes
    in_clickhouse = "FROM decisions FINAL WHERE served_by != ''"
    deadline = time.monotonic() + 60
    while engine.count(f"SELECT count() {in_clickhouse}") < len(expected) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert engine.count(f"SELECT count() {in_clickhouse}") == len(expected)
    assert engine.count(f"SELECT uniqExact(decision_id) {in_clickhouse}") == len(expected)
    # Not one served decision ingested twice, even before merges.
    assert engine.count("SELECT count() FROM decisions WHERE served_by != ''") == len(expected)
