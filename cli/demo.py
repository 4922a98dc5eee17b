"""``symphony demo``: traffic through the official ``openai`` package, then a report from ClickHouse.

The demo is a user of Symphony like any other app: it points the OpenAI SDK at
the proxy with the development key `symphony up` made (app ``dev``), sends a few
hundred chat requests (half of them streaming), waits until every decision has
reached ClickHouse, and prints per provider and model (the arm the policy chose):
requests, tokens, cost in USD, the fallbacks taken, the share the challenger
policy drew (the rest is the champion's), latency percentiles (the whole request,
fallbacks included), and the quota headroom the latest request saw: the smallest
share left of any cap it counted against (``tightest_limit`` names it).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import openai

from cli.dev_key import DEV_APP
from symphony import engine_client
from symphony.catalog import resolve_policy_path
from symphony.clock import shared_clock
from symphony.engine_client import QueryResult
from symphony.quotas import QuotaPolicy, load_quota_policy
from symphony.redis_client import sync_redis
from symphony.settings import Settings

DEMO_APP = DEV_APP  # the development key's app (also the label when auth is disabled)
NO_KEY = "auth-disabled"  # what the SDK sends when the proxy asks no key
PROMPTS = (
    "Summarise the plot of Hamlet in two sentences.",
    "Write a haiku about rate limits.",
    "Explain what a circuit breaker does in a network client.",
    "Translate 'good morning' into French, Spanish and German.",
    "List three uses of a Bloom filter.",
)

_SUMMARY_SQL = """
SELECT d.provider AS provider, d.model AS model, count() AS requests,
       sum(u.input_tokens) AS input_tokens, sum(u.output_tokens) AS output_tokens,
       sum(u.cost_usd) AS cost_usd, sum(length(d.fallbacks)) AS fallbacks,
       round(countIf(d.policy = 'challenger') / count(), 3) AS challenger_share,
       round(quantile(0.5)(u.latency_ms), 1) AS p50_ms, round(quantile(0.95)(u.latency_ms), 1) AS p95_ms,
       argMax(d.quota_remaining, d.ts) AS quota_remaining
FROM (SELECT decision_id, provider, model, policy, fallbacks, quota_remaining, ts
      FROM decisions FINAL {where}) AS d
INNER JOIN (SELECT decision_id, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                   sum(cost_usd) AS cost_usd, sum(latency_ms) AS latency_ms
            FROM usage FINAL GROUP BY decision_id) AS u
    ON u.decision_id = d.decision_id
GROUP BY provider, model
ORDER BY requests DESC, provider, model
"""


def _where(app: str | None, since_ms: int | None) -> str:
    conditions = [] if app is None else [f"app = '{app}'"]
    if since_ms is not None:
        conditions.append(f"ts >= fromUnixTimestamp64Milli({since_ms})")
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def summary_sql(app: str | None = None, since_ms: int | None = None) -> str:
    """Requests, tokens, cost, fallbacks, challenger share, latency and the latest quota snapshot per
    provider and model of the chosen arm, for one app (or all)."""
    return _SUMMARY_SQL.format(where=_where(app, since_ms))


def with_headroom(summary: QueryResult, policy: QuotaPolicy) -> QueryResult:
    """``summary`` with its ``quota_remaining`` snapshots (room left per limit, by the limit's name)
    turned into ``quota_headroom`` (the smallest share left of a cap the policy names) and
    ``tightest_limit`` (that cap); ``None`` for both when the snapshot names no cap of the policy."""
    at = summary.columns.index("quota_remaining")
    caps: dict[str, int] = {}
    for row in summary.rows:
        caps.update((limit.name, limit.cap) for limit in policy.limits(row[0], row[1]))
    rows = []
    for row in summary.rows:
        shares = {name: room / caps[name] for name, room in (row[at] or {}).items() if caps.get(name)}
        tightest = min(shares, key=shares.__getitem__) if shares else None
        headroom = round(shares[tightest], 4) if tightest is not None else None
        rows.append([*row[:at], headroom, tightest, *row[at + 1 :]])
    columns = [*summary.columns[:at], "quota_headroom", "tightest_limit", *summary.columns[at + 1 :]]
    return QueryResult(columns, rows)


@dataclass(frozen=True)
class LoadResult:
    sent: int
    succeeded: int
    failures: list[str]


def _one_request(client: openai.OpenAI, index: int, rng: random.Random) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": rng.choice(PROMPTS)},
    ]
    if index % 2:
        stream = client.chat.completions.create(
            model="auto",
            messages=messages,
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        )
        for _ in stream:
            pass
    else:
        client.chat.completions.create(model="auto", messages=messages, max_tokens=64)


def send_requests(
    proxy_url: str,
    count: int,
    *,
    api_key: str,
    concurrency: int = 16,
    say: Callable[[str], None] = print,
    seed: int = 7,
) -> LoadResult:
    """Send ``count`` chat requests through the proxy with ``api_key``, half of them streaming."""
    client = openai.OpenAI(
        base_url=f"{proxy_url}/v1",
        api_key=api_key,
        max_retries=0,
        default_headers={"x-symphony-app": DEMO_APP},
    )
    rng = random.Random(seed)
    failures: list[str] = []
    done = 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(_one_request, client, i, rng) for i in range(count)]
        for future in as_completed(futures):
            done += 1
            if (error := future.exception()) is not None:
                failures.append(repr(error))
            if done % 100 == 0 or done == count:
                say(f"  sent {done}/{count} requests ({len(failures)} failed)")
    return LoadResult(sent=count, succeeded=count - len(failures), failures=failures)


@dataclass(frozen=True)
class DemoResult:
    load: LoadResult
    summary: QueryResult


def run_demo(
    settings: Settings, requests: int, api_key: str | None, say: Callable[[str], None] = print
) -> DemoResult:
    """Traffic through a running stack, then this run's summary once every decision is in ClickHouse.

    ``api_key``: the development key (None when auth is disabled).
    """
    since_ms = shared_clock(sync_redis(settings.redis_url)).now_ms()
    say(f"\nsending {requests} requests through {settings.proxy_url}/v1 with the openai package")
    load = send_requests(settings.proxy_url, requests, api_key=api_key or NO_KEY, say=say)
    say("waiting for every decision to reach ClickHouse")
    count_sql = f"SELECT count() FROM decisions FINAL {_where(DEMO_APP, since_ms)}"
    engine_client.wait_for_count(settings.engine_url_as("analyst"), count_sql, load.succeeded, timeout=60)
    summary = engine_client.query(settings.engine_url_as("analyst"), summary_sql(DEMO_APP, since_ms))
    policy = load_quota_policy(resolve_policy_path(settings.quota_policy_file))
    return DemoResult(load, with_headroom(summary, policy))
