"""scheduler-report's figures on a period worked by hand, and its reads of real ClickHouse (chDB).

Every expected value below is worked out by hand from the uses listed (the comments show the
arithmetic), not from ``scheduler.report``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from cli.scheduler_report import parse_period
from scheduler.dispatcher import interactive_forecast
from scheduler.forecast_publisher import publish
from scheduler.history import Use, learn_forecast, period_use
from scheduler.report import deltas, report
from sinks.clickhouse import to_arrow
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore
from symphony.events import Decision, Usage, new_id
from symphony.jobs import Job
from symphony.keys import forecast_key
from symphony.quotas import DAY_MS, HOUR_MS, QuotaPolicy
from symphony.redis_server import RedisServer

H = HOUR_MS
K = 1_000
POLICY = QuotaPolicy.model_validate(
    {
        "version": "t",
        "providers": {
            "openai": {"subscription": {"window": "3h", "reset": "fixed", "tokens": 100 * K}},
            "anthropic": {"subscription": {"window": "5h", "reset": "first_use", "tokens": 50 * K}},
            "perplexity": {},
        },
    }
)
DAY0 = 20_000 * DAY_MS  # a UTC midnight


def use(at_h: float, provider: str, tokens_k: int, job: str = "", **terms: Any) -> Use:
    tokens = tokens_k * K
    return Use(DAY0 + int(at_h * H), provider, tokens, tokens * 1e-5, job, **terms)


def job_use(at_h: float, provider: str, tokens_k: int, job: str, created_h: float, deadline_h: float) -> Use:
    return use(
        at_h,
        provider,
        tokens_k,
        job,
        deadline_ms=DAY0 + int(deadline_h * H),
        created_ms=DAY0 + int(created_h * H),
        estimate=tokens_k * K,
        allowed=(provider,),
    )


USES = [
    use(1, "openai", 60),  # openai [0h, 3h): 60 + 30 = 90 of 100
    job_use(2, "openai", 30, "A", created_h=1, deadline_h=4),
    use(4, "openai", 80),  # openai [3h, 6h): 80 + 40 = 120: 100 filled, 20 over (cost 1.2 * 20/120 = 0.2)
    job_use(5, "openai", 40, "B", created_h=4, deadline_h=4.5),  # answered half an hour late
    use(1, "anthropic", 20),  # anthropic opens [1h, 6h): 20 + 40 = 60: 50 filled, 10 over (0.6 * 10/60)
    job_use(3, "anthropic", 40, "C", created_h=0, deadline_h=12),
    use(7, "anthropic", 10),  # anthropic opens [7h, 12h): 10 + 5 = 15
    use(11, "anthropic", 5),
    job_use(6, "perplexity", 7, "D", created_h=5, deadline_h=12),  # no window: 7 over, cost 0.07
]


def test_a_period_worked_by_hand() -> None:
    made = report("p", USES, POLICY, DAY0, DAY0 + 12 * H, optimum_time_limit_s=5)
    by = {p.provider: p for p in made.providers}
    # openai: 4 windows of 100 in 12h, filled 90 + 100 + 0 + 0
    assert (by["openai"].windows, by["openai"].utilisation) == (4, 190 / 400)
    assert by["anthropic"].windows == 2 and by["anthropic"].utilisation == (50 + 15) / 100
    assert (by["openai"].overflow, by["anthropic"].overflow, made.unwindowed_job_tokens) == (
        20 * K,
        10 * K,
        7 * K,
    )
    assert made.overflow_tokens == 37 * K
    assert made.overflow_cost_usd == pytest.approx(0.2 + 0.1 + 0.07)
    assert made.deadline_misses == ["B"]
    assert (made.jobs, made.job_tokens, made.interactive_tokens) == (4, 117 * K, 175 * K)
    assert made.utilisation == (190 + 65) / 500
    # The optimum, by hand: A fits openai [0h, 3h) (40 left); B fits nowhere whole ([3h, 6h) has 20 left
    # after its 80 interactive); C fits a 5h anthropic window with no interactive use in it: the first
    # that ends, [1h30, 6h30), which is the only one it opens (40 of 50). D has no window.
    assert by["openai"].optimum_utilisation == (90 + 80) / 400
    assert (by["anthropic"].optimum_windows, by["anthropic"].optimum_utilisation) == (1, 40 / 50)
    assert made.optimum["overflow_tokens"] == (40 + 7) * K
    assert made.optimum_utilisation == pytest.approx((170 + 40) / 450)
    assert made.ratio == pytest.approx((255 / 500) / (210 / 450))


def test_the_deltas_between_two_periods() -> None:
    first = report("a", USES, POLICY, DAY0, DAY0 + 12 * H, optimum_time_limit_s=0)
    # openai [6h, 9h): 100 + 30 = 130, 30 over (cost 1.3 * 30/130 = 0.3); [9h, 12h): 50
    fuller = [*USES, use(7, "openai", 100), use(8, "openai", 30), use(10, "openai", 50)]
    second = report("b", fuller, POLICY, DAY0, DAY0 + 12 * H, optimum_time_limit_s=0)
    change = deltas(first, second)
    assert change["utilisation_by_provider"]["openai"] == pytest.approx(150 / 400)
    assert change["utilisation_by_provider"]["anthropic"] == 0
    assert change["overflow_tokens"] == 30 * K and change["overflow_change"] == pytest.approx(
        30 / 37, abs=1e-6
    )
    assert change["overflow_cost_usd"] == pytest.approx(0.3)
    assert change["deadline_misses"] == 0 and first.optimum == {}


def test_periods_by_name_and_by_dates() -> None:
    wednesday_noon = 20_425 * DAY_MS + 12 * H  # 2025-12-03 (day 20,425 of the epoch) was a Wednesday
    last = parse_period("last_week", wednesday_noon)
    assert (last.since_ms, last.until_ms) == (20_416 * DAY_MS, 20_423 * DAY_MS)  # Mon 24 Nov .. Mon 1 Dec
    this = parse_period("this_week", wednesday_noon)
    assert (this.since_ms, this.until_ms) == (20_423 * DAY_MS, wednesday_noon)
    named = parse_period("2025-11-24..2025-12-01", wednesday_noon)
    assert (named.since_ms, named.until_ms) == (last.since_ms, last.until_ms)
    hours = parse_period("2025-12-01T06:00..2025-12-01T18:30", 0)
    assert (hours.since_ms, hours.until_ms) == (
        20_423 * DAY_MS + 6 * H,
        20_423 * DAY_MS + 18 * H + 30 * 60_000,
    )
    for bad in ("lastweek", "2025-12-02..2025-12-01", "monday..friday"):
        with pytest.raises(ValueError, match=r"expected|after the start|not a UTC date"):
            parse_period(bad, wednesday_noon)


# --- ClickHouse -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore.connect(f"chdb://{tmp_path_factory.mktemp('report') / 'chdb'}")
    try:
        migrate(store)
        yield store
    finally:
        store.close()


def write(store: ClickHouseStore, at_ms: int, provider: str, tokens: int, job: Job | None = None) -> None:
    """One answered attempt as the proxy records it: its decision (a job's terms in overrides) and usage."""
    decision_id = new_id(at_ms)
    overrides = job.decision_overrides() if job is not None else {}
    decision = Decision(
        event_id=new_id(at_ms),
        ts=at_ms,
        decision_id=decision_id,
        request_id=decision_id,
        app="a",
        task="chat",
        candidates=[f"{provider}/m"],
        probabilities=[1.0],
        provider=provider,
        model="m",
        policy="champion",
        policy_version="v",
        propensity=1.0,
        overrides=overrides,
    )
    answered = Usage(
        event_id=new_id(at_ms),
        ts=at_ms,
        decision_id=decision_id,
        app="a",
        provider=provider,
        model="m",
        attempt=1,
        status="ok",
        ttfb_ms=1.0,
        latency_ms=2.0,
        input_tokens=tokens - 10,
        output_tokens=10,
        cost_usd=0.5,
    )
    failed = answered.model_copy(update={"event_id": new_id(at_ms), "status": "5xx", "attempt": 2})
    for table, rows in (("decisions", [decision]), ("usage", [answered, failed])):
        store.insert_arrow(table, to_arrow(table, rows)[0])


def query_of(store: ClickHouseStore) -> Any:
    return lambda sql: store.query(sql).rows


def test_a_jobs_terms_and_tokens_come_back_from_clickhouse(store: ClickHouseStore) -> None:
    start = DAY0 + 40 * DAY_MS
    job = Job(
        "job_x",
        "a",
        {},
        deadline_ms=start + 5 * H,
        tokens=900,
        providers=("openai", "gemini"),
        created_ms=start,
    )
    write(store, start + H, "openai", 1_000, job)
    write(store, start + 2 * H, "anthropic", 300)
    write(store, start + 30 * H, "anthropic", 300)  # outside the period read
    read = period_use(query_of(store), start, start + DAY_MS)
    assert read == [
        Use(start + H, "openai", 1_000, 0.5, "job_x", start + 5 * H, start, 900, ("gemini", "openai")),
        Use(start + 2 * H, "anthropic", 300, 0.5),
    ]


def test_the_forecast_is_learned_from_the_interactive_use_in_clickhouse(store: ClickHouseStore) -> None:
    start = DAY0 + 80 * DAY_MS
    job = Job("job_y", "a", {}, deadline_ms=start + DAY_MS, tokens=5_000, created_ms=start)
    write(store, start + 9 * H + 60_000, "openai", 4_000)  # day 1, 09:01
    write(store, start + 9 * H + 120_000, "openai", 2_000)
    write(store, start + 9 * H + 180_000, "openai", 5_000, job)  # a job: not interactive use
    write(store, start + DAY_MS + 9 * H + 60_000, "openai", 1_000)  # day 2, 09:01
    write(store, start + DAY_MS + 14 * H, "gemini", 700)  # gemini 14:00 on day 2 only
    now = start + 2 * DAY_MS
    learned = learn_forecast(query_of(store), now, ["openai", "gemini"], days=7)
    # History runs from the hour of the first use (day 1, 09h) to now. openai 09h: (6,000 + 1,000) / 2;
    # gemini 14h: (0 on day 1 + 700 on day 2) / 2; openai 03h: only day 2's is history, and it was quiet.
    assert learned.forecast("openai", now + 9 * H, now + 10 * H) == 3_500
    assert learned.forecast("gemini", now + 14 * H, now + 15 * H) == 350
    assert learned.forecast("openai", now + 3 * H, now + 4 * H) == 0
    assert "interactive attempts" in learned.note
    empty = learn_forecast(query_of(store), DAY0, ["openai"], days=7)
    assert empty.forecast("openai", DAY0, DAY0 + DAY_MS) == 0 and "no use in ClickHouse" in empty.note


def test_the_engine_publishes_the_learned_forecast_and_the_dispatcher_plans_with_it(
    store: ClickHouseStore, redis_server: RedisServer
) -> None:
    start = DAY0 + 120 * DAY_MS
    write(store, start + 9 * H, "openai", 8_000)  # the only history: openai 09h on one day
    write(store, start + DAY_MS - 1, "gemini", 10)  # a use at the day's end
    client = redis.Redis.from_url(redis_server.url)
    note = publish(client, query_of(store), ["gemini", "openai"], start + DAY_MS)
    assert "15 h of history" in note  # from 09h, the hour of the first use, to the day's end
    policy = QuotaPolicy.model_validate(
        {
            "version": "t",
            "providers": {
                "openai": {"subscription": {"window": "3h", "reset": "fixed", "tokens": 100 * K}},
                "gemini": {"subscription": {"window": "1d", "reset": "fixed", "tokens": 100 * K}},
            },
        }
    )

    async def forecast_of(at: int, until: int) -> int:
        aclient = aioredis.Redis.from_url(redis_server.url)
        try:
            return (await interactive_forecast(aclient, policy))("openai", at, until)
        finally:
            await aclient.aclose()

    tomorrow = start + 2 * DAY_MS
    # 09h-12h tomorrow: 8,000 in its 09h; half of 09h-10h: 4,000
    assert asyncio.run(forecast_of(tomorrow + 9 * H, tomorrow + 12 * H)) == 8_000
    assert asyncio.run(forecast_of(tomorrow + 9 * H + 30 * 60_000, tomorrow + 10 * H)) == 4_000
    client.delete(forecast_key("openai"))  # none published: the live burn rate (none here, so 0)
    assert asyncio.run(forecast_of(tomorrow + 9 * H, tomorrow + 12 * H)) == 0
    client.close()
