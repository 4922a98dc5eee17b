"""The dispatcher: when each job is due (by hand), and its timing through a real proxy, simulator and Redis
on a simulated clock: no job misses its deadline while a window with budget was open to it, a job waits
for a window with room rather than spill, and `scheduler_enabled=false` sends at once, live."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from pydantic import SecretStr

from scheduler.dispatcher import Dispatcher, schedule
from scheduler.history import period_use
from scheduler.report import report
from scheduler.windows import Slot
from symphony import engine_client
from symphony.catalog import load_catalog
from symphony.clock import Clock, publish_clock, shared_clock
from symphony.flags import Flags
from symphony.jobs import Job, JobStore
from symphony.keys import FLAGS_KEY
from symphony.quotas import load_quota_policy
from symphony.redis_server import RedisServer, free_port
from tests.engineutil import Engine
from tests.proxy_stack import ProxyStack, bearer

H = 3_600_000
MIN = 60_000
DAY0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)  # a midnight UTC
NOW = DAY0 + 2 * H + 40 * MIN  # 02:40 UTC: OpenAI's 00:00-03:00 window closes in 20 minutes
NEXT_OPENAI = DAY0 + 3 * H
SPEED = 300.0  # five event minutes a real second
LATE = 15 * MIN  # how late a dispatch may come after its time: a few ticks of a loaded machine (3 s)
CATALOG = load_catalog()
REQUEST = {"model": "auto", "messages": [{"role": "user", "content": "summarise"}], "max_tokens": 8}


def job(job_id: str, deadline: int, providers: tuple[str, ...] = ("openai",), tokens: int = 1_000) -> Job:
    return Job(job_id, "app", REQUEST, deadline, tokens, providers)


# --- when a job is due, by hand -----------------------------------------------------------------------------


def test_a_planned_job_is_due_at_its_slots_start_and_the_overflow_at_once() -> None:
    windows = [
        Slot("openai", DAY0, DAY0 + 3 * H, cap=10_000, used=9_000),  # open now, nearly full
        Slot("openai", NEXT_OPENAI, NEXT_OPENAI + 3 * H, cap=2_000),  # room for one of the two
    ]
    jobs = [
        job("fits-now", NOW + 5 * H, tokens=1_000),
        job("waits", NOW + 5 * H, tokens=2_000),
        job("too-soon", NOW + 10 * MIN, tokens=2_000),  # no window with room before its deadline
        job("elsewhere", NOW + 5 * H, providers=("perplexity",)),  # no usage window at all
    ]
    due = {d.job_id: (d.at_ms, d.provider) for d in schedule(jobs, NOW, windows, CATALOG).due}
    assert due == {
        "fits-now": (NOW, "openai"),
        "waits": (NEXT_OPENAI, "openai"),
        "too-soon": (NOW, ""),
        "elsewhere": (NOW, ""),
    }
    off = schedule(jobs, NOW, windows, CATALOG, enabled=False)
    assert {(d.at_ms, d.provider) for d in off.due} == {(NOW, "")} and off.plan is None


def test_a_job_due_beyond_the_horizon_waits_for_a_later_plan_rather_than_spill() -> None:
    """No window in the 12h horizon has room; one job's deadline is within it (overflow: at once), the
    other's is a day away, when windows the plan cannot see yet may have room: it waits."""
    windows = [Slot("openai", DAY0, DAY0 + 3 * H, cap=10_000, used=10_000)]
    jobs = [
        job("soon", NOW + 5 * H),
        job("tomorrow", NOW + 24 * H),
        job("pay", NOW + 24 * H, ("perplexity",)),
    ]
    due = {d.job_id: (d.at_ms, d.provider) for d in schedule(jobs, NOW, windows, CATALOG).due}
    assert due == {"soon": (NOW, ""), "pay": (NOW, "")}  # "pay" may use no window: nothing to wait for


def test_a_job_is_not_planned_to_start_minutes_before_its_deadline() -> None:
    """The next window opens two minutes before the job's deadline: sent then, it would be answered late
    (a chat answer takes longer), so it is sent now, outside a window, in time."""
    windows = [
        Slot("openai", DAY0, DAY0 + 3 * H, cap=10_000, used=10_000),
        Slot("openai", NEXT_OPENAI, NEXT_OPENAI + 3 * H, cap=10_000),
    ]
    late = job("late", NEXT_OPENAI + 2 * MIN)
    roomy = job("roomy", NEXT_OPENAI + 10 * MIN)
    due = {d.job_id: (d.at_ms, d.provider) for d in schedule([late, roomy], NOW, windows, CATALOG).due}
    assert due == {"late": (NOW, ""), "roomy": (NEXT_OPENAI, "openai")}


def test_a_pinned_model_plans_the_job_on_its_provider_only() -> None:
    windows = [
        Slot("openai", DAY0, DAY0 + 3 * H, cap=10_000),
        Slot("gemini", DAY0, DAY0 + 24 * H, cap=10_000),
    ]
    pinned = Job(
        "pinned", "app", {**REQUEST, "model": "gemini-2.5-flash"}, NOW + H, 100, ("openai", "gemini")
    )
    [due] = schedule([pinned], NOW, windows, CATALOG).due
    assert due.provider == "gemini"


# --- timing through the real proxy on a simulated clock ----------------------------------------------------


@pytest.fixture
def clock(redis_server: RedisServer) -> Clock:
    client = redis.Redis.from_url(redis_server.url)
    publish_clock(client, start_ms=NOW, speed=SPEED)
    # OpenAI's window open now holds all but 500 tokens of its budget (what interactive use left)
    policy = load_quota_policy()
    tokens = next(
        lim for lim in policy.limits("openai", "") if lim.window.name == "3h" and lim.metric == "tokens"
    )
    client.hset(tokens.key, tokens.window.buckets(NOW)[0], tokens.cap - 500)
    found = shared_clock(client)
    client.close()
    return found


@pytest.fixture
def stack(redis_server: RedisServer, clock: Clock) -> Iterator[ProxyStack]:
    with ProxyStack(redis_server, dispatcher_token=SecretStr(secrets.token_urlsafe(32))) as running:
        yield running


def create(stack: ProxyStack, deadline: int, **fields: Any) -> str:
    body = {"request": REQUEST, "deadline_ms": deadline, "tokens": fields.pop("tokens", 2_000), **fields}
    answer = httpx.post(f"{stack.base_url}/jobs", json=body, headers=bearer(stack.key), timeout=30)
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["id"]
    return job_id


def run_dispatcher(stack: ProxyStack, clock: Clock, job_ids: list[str], timeout_s: float) -> dict[str, Job]:
    """Run a dispatcher until every job in ``job_ids`` has ended; their records."""
    assert stack.settings.dispatcher_token is not None
    token = stack.settings.dispatcher_token.get_secret_value()

    async def main() -> dict[str, Job]:
        client = aioredis.Redis.from_url(stack.settings.redis_url)
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
            dispatcher = Dispatcher(client, http, clock, token, defaults=Flags(True, 0.05), replan_s=1.0)
            stop = asyncio.Event()
            running = asyncio.create_task(dispatcher.run(stop))
            store = JobStore(client)
            try:
                async with asyncio.timeout(timeout_s):
                    while True:
                        jobs = {job_id: await store.get(job_id) for job_id in job_ids}
                        ended = {
                            i: j for i, j in jobs.items() if j is not None and j.state in ("done", "failed")
                        }
                        if len(ended) == len(job_ids):
                            return ended
                        await asyncio.sleep(0.1)
            finally:
                stop.set()
                await running
                await client.aclose()

    return asyncio.run(main())


def test_no_job_misses_its_deadline_while_a_window_with_budget_was_open_to_it(
    stack: ProxyStack, clock: Clock
) -> None:
    created = clock.now_ms()  # the simulated clock has run while the stack started
    assert created < NEXT_OPENAI - 5 * MIN, "the stack took too long to start for this clock"
    deadlines = {
        "waits for openai's next window": (NEXT_OPENAI + 2 * H, {"providers": ["openai"]}),
        "gemini has room now": (created + 2 * H, {"providers": ["gemini"]}),
        "anthropic opens at first use": (created + 2 * H, {"providers": ["anthropic"]}),
        "any provider": (created + 2 * H, {}),
        "two models": (created + 4 * H, {"models": ["openai/gpt-4o-mini", "gemini/gemini-2.5-flash"]}),
        "openai only, before its next window": (NEXT_OPENAI - MIN, {"providers": ["openai"]}),
    }
    ids = {name: create(stack, deadline, **fields) for name, (deadline, fields) in deadlines.items()}
    ended = run_dispatcher(stack, clock, list(ids.values()), timeout_s=60)
    jobs = {name: ended[job_id] for name, job_id in ids.items()}
    for name, found in jobs.items():
        assert found.state == "done", (name, found.error)
        assert found.started_ms is not None and found.started_ms < found.deadline_ms, name
        assert found.result is not None and found.result["object"] == "chat.completion"
    # The job that only OpenAI may run waited for the window with budget, and went in its first minutes.
    waited = jobs["waits for openai's next window"]
    assert waited.planned_provider == "openai" and waited.planned_ms == NEXT_OPENAI
    assert waited.started_ms is not None and NEXT_OPENAI <= waited.started_ms < NEXT_OPENAI + LATE
    assert waited.provider == "openai"
    # Every planned job went at its planned time (within a few ticks), inside its window, before its deadline;
    # Gemini's day window is open now with room: its job went at once.
    for name, found in jobs.items():
        if found.planned_provider:
            assert found.planned_ms is not None and found.started_ms is not None
            assert found.planned_ms <= found.started_ms < found.planned_ms + LATE, name
            assert found.provider == found.planned_provider, name
    gemini = jobs["gemini has room now"]
    assert gemini.started_ms is not None and gemini.started_ms < gemini.created_ms + LATE
    # No window had room before this one's deadline: it is the overflow, sent at once, and still in time.
    overflow = jobs["openai only, before its next window"]
    assert overflow.planned_provider == "" and overflow.started_ms is not None
    assert overflow.started_ms < overflow.deadline_ms


def test_the_report_reads_back_from_clickhouse_the_jobs_the_dispatcher_ran(
    stack: ProxyStack, clock: Clock, engine: Engine
) -> None:
    """The whole chain: the dispatcher sends through the proxy, the proxy's events go through the engine into
    ClickHouse, and scheduler-report's reads find each job where it ran, with the terms of its record."""
    created = clock.now_ms()
    assert created < NEXT_OPENAI - 5 * MIN, "the stack took too long to start for this clock"
    ids = [
        create(stack, NEXT_OPENAI + 2 * H, providers=["openai"]),  # waits for OpenAI's next window
        create(stack, created + 2 * H, providers=["gemini", "anthropic"]),  # Gemini's day has room now
    ]
    ended = run_dispatcher(stack, clock, ids, timeout_s=60)
    engine.start()
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL WHERE status = 'ok'", 2)

    def query(sql: str) -> list[list[Any]]:
        return engine_client.query(engine.url, sql).rows

    uses = period_use(query, DAY0, DAY0 + 24 * H)
    assert sorted(use.job for use in uses) == sorted(ids)  # no interactive traffic here
    for use in uses:
        job = ended[use.job]
        assert job.result is not None and job.started_ms is not None and job.finished_ms is not None
        assert (use.provider, use.tokens) == (job.provider, job.result["usage"]["total_tokens"])
        assert (use.deadline_ms, use.created_ms, use.estimate) == (
            job.deadline_ms,
            job.created_ms,
            job.tokens,
        )
        assert use.allowed == tuple(sorted(job.providers))
        assert job.started_ms <= use.ts_ms <= job.finished_ms
    made = report("day", uses, load_quota_policy(), DAY0, DAY0 + 24 * H, optimum_time_limit_s=5)
    assert made.deadline_misses == [] and made.jobs == 2
    waited = ended[ids[0]]
    [window] = [w for w in made.windows if w.provider == "openai" and w.start_ms == NEXT_OPENAI]
    assert window.jobs == waited.result["usage"]["total_tokens"] and window.interactive == 0  # type: ignore[index]


def test_scheduler_off_sends_at_once_live_and_keeps_the_queue(
    stack: ProxyStack, clock: Clock, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.hset(FLAGS_KEY, "scheduler_enabled", "false")
    assert clock.now_ms() < NEXT_OPENAI - 5 * MIN, "the stack took too long to start for this clock"
    job_id = create(stack, NEXT_OPENAI + 2 * H, providers=["openai"])
    [found] = run_dispatcher(stack, clock, [job_id], timeout_s=30).values()
    assert found.state == "done" and found.started_ms is not None
    # the baseline: at once, into the window open now (it had 500 tokens left), not at OpenAI's next window
    assert found.started_ms < min(found.created_ms + LATE, NEXT_OPENAI)
    client.close()


def test_a_dispatch_the_proxy_never_admitted_goes_back_to_the_queue(
    stack: ProxyStack, clock: Clock, redis_server: RedisServer
) -> None:
    """The proxy unreachable, or refusing the dispatcher's token: the job was not run, so it waits again."""
    job_id = create(stack, NEXT_OPENAI + 2 * H, providers=["gemini"])
    dead = f"http://127.0.0.1:{free_port()}"

    async def main(base_url: str, token: str) -> Job | None:
        client = aioredis.Redis.from_url(redis_server.url)
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
            dispatcher = Dispatcher(client, http, clock, token, defaults=Flags(True, 0.05))
            stop = asyncio.Event()
            running = asyncio.create_task(dispatcher.run(stop))
            await asyncio.sleep(1.5)
            stop.set()
            await running
            assert dispatcher.sent >= 1
            found = await JobStore(client).get(job_id)
        await client.aclose()
        return found

    for base_url, token in ((dead, "any-token-any-token"), (stack.url, "not-the-dispatcher-token")):
        found = asyncio.run(main(base_url, token))
        assert found is not None, base_url
        assert found.state in ("queued", "planned") and (found.owner, found.admitted_ms) == ("", None), found
    assert stack.sim_app.total() == 0
    # With the right token it then runs, once.
    [done] = run_dispatcher(stack, clock, [job_id], timeout_s=30).values()
    assert done.state == "done" and stack.sim_app.total() == 1
