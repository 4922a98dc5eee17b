"""An app's daily budget holds across proxy replicas (separate processes) under concurrent load.

The bound the design guarantees (symphony/quotas/rules.py, proxy/attempts/quota_gate.py,
proxy/attempts/attempt_loop.py):
every attempt reserves its *estimated* cost (prompt estimate + ``max_tokens`` at the arm's
price, rounded up to a micro-dollar) in the app's ``usd_micros`` bucket, in one atomic script
that grants only if ``used + estimate <= budget``, and settles it later to the actual cost
(rounded to a micro-dollar). The app scope is reserved before the provider's and refunded if the
provider refuses, so the race between the two never adds spend. Hence, with ``e_i`` = actual -
estimate of attempt ``i`` and ``F`` the attempts in flight when the last grant was made:

    settled spend <= budget + sum(max(e_i, 0) for i in F)

``F`` holds at most one attempt per client (``CONCURRENCY``). One request's estimate error is
the bound for one request at a time; with ``CONCURRENCY`` in flight it is theirs added up. Here
every estimate is an upper bound (prompts sized so the proxy's estimate covers the simulator's
count, answers capped by ``max_tokens``; both checked row by row from ClickHouse), so every
``e_i <= 0`` and the spend must not pass the budget at all, up to the micro-dollar rounding of
each settlement.
"""

from __future__ import annotations

import math
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis

from simulator import BackgroundServer
from simulator import create_app as create_sim_app
from symphony import engine_client
from symphony.app_keys import USD_MICROS
from symphony.clock import RealClock, wall_ms
from symphony.quotas import DAY_MS
from symphony.redis_server import RedisServer
from tests.engineutil import Engine
from tests.proxy_stack import CATALOG, ProxyStack, issue_key, start_proxy

APP = "budgeted"
DECISION_KEY = "budget-test-decision-key-0123456789"
BUDGET_USD = 0.005  # a few dozen requests at their estimate, more at their actual cost
MAX_TOKENS = 64
REQUESTS = 240
CONCURRENCY = 24
REPLICAS = 3
# Three messages whose lengths are multiples of 4 characters: the proxy estimates 4 tokens a
# message plus characters / 4; the simulator counts 3 a message, 3 for the reply and characters / 4
# rounded up; so the estimate equals the count (checked below against what ClickHouse holds).
MESSAGES: Any = [
    {"role": "user", "content": "Write two lines about budgets, please."[:32]},
    {"role": "assistant", "content": "Which budgets, say?"[:16]},
    {"role": "user", "content": "Daily ones, for one app."},
]
assert all(len(m["content"]) % 4 == 0 for m in MESSAGES)
ESTIMATED_INPUT_TOKENS = sum(len(m["content"]) // 4 + 4 for m in MESSAGES)


def estimate_micros(provider: str, model: str) -> int:
    """What the proxy reserves for one attempt on the arm, by the rule written above (rounded up)."""
    price = CATALOG.providers[provider].models[model]
    usd = (ESTIMATED_INPUT_TOKENS * price.input_per_mtok + MAX_TOKENS * price.output_per_mtok) / 1e6
    return math.ceil(usd * USD_MICROS)


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
        return "budget_exhausted" if "budget for this UTC day" in refused.message else refused.message


@pytest.fixture
def simulator() -> Iterator[str]:
    server = BackgroundServer(create_sim_app(RealClock(), CATALOG, seed=3)).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("workers", "any_redis"),
    [(1, "server"), (REPLICAS, "server"), (1, "cluster")],
    ids=["three proxies", "one proxy of three workers", "three proxies on a Redis Cluster"],
    indirect=["any_redis"],
)
def test_a_daily_budget_holds_across_three_proxy_processes_under_concurrent_load(
    any_engine: tuple[Engine, redis.Redis], simulator: str, tmp_path: Path, workers: int
) -> None:
    """Three proxies on their own ports, or one proxy whose three worker processes share its port; on one
    Redis server, or on a Redis Cluster of three masters with replicas."""
    engine, client = any_engine
    engine.start()
    key = issue_key(client, APP, budget_usd_day=BUDGET_USD)
    proxies = [
        start_proxy(engine.redis_url, simulator, tmp_path, i, workers, decision_key=DECISION_KEY)
        for i in range(REPLICAS // workers)
    ]
    try:
        urls = [url for _, url in proxies]
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            outcomes = list(pool.map(lambda i: send(i, urls, key), range(REQUESTS)))
    finally:
        for process, _ in proxies:  # SIGTERM: finish in-flight requests and settlements, flush events
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process, _ in proxies]
    # uvicorn re-raises SIGTERM once its graceful shutdown is complete: that is a clean stop.
    assert set(codes) <= {0, -signal.SIGTERM}, codes
    logs = [(tmp_path / f"proxy-{index}.log").read_text() for index in range(len(proxies))]
    assert sum(log.count("Application shutdown complete") for log in logs) == REPLICAS

    settled_micros = int(client.hget(f"quota:{{app:{APP}}}:usd_micros:1d", str(wall_ms() // DAY_MS)) or 0)
    # How many events the replicas published (each says so as it stops), only to know when
    # ClickHouse holds them all; the spend itself comes from ClickHouse.
    stopped = [found for log in logs for found in re.findall(r"(\d+) events published, (\d+) dropped", log)]
    assert len(stopped) == REPLICAS and all(dropped == "0" for _, dropped in stopped), stopped
    published = sum(int(count) for count, _ in stopped)
    rows = wait_for_usage_rows(engine, published)

    assert set(outcomes) <= {"ok", "budget_exhausted"}, sorted(set(outcomes))
    served, refused = outcomes.count("ok"), outcomes.count("budget_exhausted")
    assert served >= 10 and refused >= REQUESTS // 4, (served, refused)
    assert len({decision for decision, _, _, _, _, status, _ in rows if status == "ok"}) == served

    errors = []
    for _, provider, model, input_tokens, output_tokens, status, cost_usd in rows:
        # What the simulator counted never passes the proxy's estimate: e_i <= 0 for every attempt.
        assert input_tokens <= ESTIMATED_INPUT_TOKENS and output_tokens <= MAX_TOKENS, (
            provider,
            model,
            input_tokens,
            output_tokens,
            status,
        )
        errors.append(cost_usd * USD_MICROS - estimate_micros(provider, model))
    spent_micros = sum(row[-1] for row in rows) * USD_MICROS
    in_flight_error = sum(sorted((max(e, 0.0) for e in errors), reverse=True)[:CONCURRENCY])
    rounding = 0.5 * len(rows)  # each settlement rounds its cost to a micro-dollar
    budget_micros = BUDGET_USD * USD_MICROS
    assert spent_micros <= budget_micros + in_flight_error + rounding, (spent_micros, budget_micros)
    assert spent_micros >= budget_micros / 2  # the budget was used, not refused from the start
    # What Redis holds is what ClickHouse says was spent, up to the rounding of each settlement.
    assert abs(settled_micros - spent_micros) <= rounding, (settled_micros, spent_micros)


Row = tuple[str, str, str, int, int, str, float]


def wait_for_usage_rows(engine: Engine, published: int, timeout: float = 60.0) -> list[Row]:
    """The app's usage rows in ClickHouse once all ``published`` events (decisions and usage) landed."""
    landed_sql = "SELECT (SELECT count() FROM decisions FINAL) + (SELECT count() FROM usage FINAL)"
    deadline = time.monotonic() + timeout
    landed = engine.count(landed_sql)
    while landed < published and time.monotonic() < deadline:
        time.sleep(0.2)
        landed = engine.count(landed_sql)
    assert landed == published, (landed, published)
    sql = (
        "SELECT decision_id, provider, model, input_tokens, output_tokens, status, cost_usd"
        f" FROM usage FINAL WHERE app = '{APP}'"
    )
    return [
        (str(d), str(p), str(m), int(i), int(o), str(s), float(c))
        for d, p, m, i, o, s, c in engine_client.query(engine.url, sql).rows
    ]


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
