"""Quota reservations against a real Redis: the semantics of symphony/quotas/rules.py, held under
concurrency."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from multiprocessing.synchronize import Barrier

import pytest
import redis

from symphony.quotas import (
    MINUTE_MS,
    ROLLING,
    Limit,
    LocalQuotaStore,
    QuotaPolicy,
    bucket_values,
    load_quota_policy,
    subscription_window,
)
from symphony.quotas.store import RESERVE_LUA, QuotaStore, Refusal, Reservation
from symphony.redis_client import sync_redis
from symphony.redis_cluster import LocalCluster
from symphony.redis_server import RedisServer

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a whole week boundary is not needed: buckets are relative
SECOND = 1000


@pytest.fixture
def redis_client(any_redis: RedisServer | LocalCluster) -> Iterator[redis.Redis]:
    """Every test here runs on a single server and on a Redis Cluster of 3 masters with replicas."""
    client = sync_redis(any_redis.url)
    try:
        yield client
    finally:
        client.close()


def small_limits() -> list[Limit]:
    return [
        Limit("openai", "requests", ROLLING["minute"], 5),
        Limit("openai", "tokens", ROLLING["minute"], 100),
        Limit("openai", "tokens", subscription_window("3m", "first_use"), 150),
    ]


def reserve(store: QuotaStore, limits: Sequence[Limit], now: int, tokens: int) -> Reservation | Refusal:
    return store.reserve(limits, now, provider="openai", model="gpt-4o-mini", tokens=tokens)


def test_policy_file_gives_every_provider_minute_day_and_week_caps() -> None:
    policy = load_quota_policy()
    assert len(policy.providers) == 7
    for provider in policy.providers:
        windows = {(limit.metric, limit.window.name) for limit in policy.provider_limits(provider)}
        assert {("requests", "minute"), ("tokens", "day"), ("tokens", "week")} <= windows
    assert {limit.window.name for limit in policy.limits("anthropic", "x")} >= {"5h"}
    assert any(limit.model == "gpt-4o" for limit in policy.limits("openai", "gpt-4o"))


def test_bad_policy_names_the_window() -> None:
    with pytest.raises(ValueError, match="unknown windows"):
        QuotaPolicy.model_validate(
            {"version": "x", "providers": {"p": {"caps": {"tokens": {"fortnight": 1}}}}}
        )


def test_keys_share_the_provider_hash_tag(redis_client: redis.Redis) -> None:
    store = QuotaStore(redis_client)
    assert isinstance(reserve(store, small_limits(), T0, 10), Reservation)
    keys = sorted(k.decode() for k in (redis_client.scan_iter("quota:*")))
    assert keys and all(k.startswith("quota:{openai}:") for k in keys)
    assert any(k.endswith(":minute") for k in keys) and any(k.endswith(":3m") for k in keys)
    assert all(redis_client.pttl(k) > 0 for k in keys)


def test_a_window_keeps_only_the_buckets_it_counts(redis_client: redis.Redis) -> None:
    """Opening a bucket deletes those that left the window, so a window's hash never outgrows it."""
    store = QuotaStore(redis_client)
    minute = Limit("openai", "tokens", ROLLING["minute"], 10**9)
    for step in range(30):  # 30 buckets of 10 s, each written once
        assert isinstance(reserve(store, [minute], T0 + step * 10 * SECOND, 1), Reservation)
    now = T0 + 29 * 10 * SECOND
    fields = redis_client.hgetall(minute.key)
    minute_of_buckets = [now // (10 * SECOND) - age for age in range(5, -1, -1)]
    assert sorted(bucket_values(fields)) == minute_of_buckets
    assert set(fields) - {str(bucket).encode() for bucket in bucket_values(fields)} == {b"newest", b"sum"}


def test_refuses_past_the_cap_and_says_when_there_is_room(redis_client: redis.Redis) -> None:
    store = QuotaStore(redis_client)
    limits = small_limits()
    for i in range(5):
        assert isinstance(reserve(store, limits, T0 + i * SECOND, 10), Reservation)
    refused = reserve(store, limits, T0 + 5 * SECOND, 10)
    assert isinstance(refused, Refusal)
    assert refused.limit.metric == "requests" and refused.used == 5 and refused.cap == 5
    # All five landed in the first 10 s bucket: room again when it leaves the minute window.
    assert refused.retry_after_ms == MINUTE_MS - 5 * SECOND
    assert isinstance(reserve(store, limits, T0 + MINUTE_MS, 10), Reservation)


def test_refusal_writes_nothing(redis_client: redis.Redis) -> None:
    store = QuotaStore(redis_client)
    limits = small_limits()
    assert isinstance(reserve(store, limits, T0, 90), Reservation)
    before = {k: redis_client.dump(k) for k in list(redis_client.scan_iter("quota:*"))}
    assert isinstance(reserve(store, limits, T0, 20), Refusal)  # tokens 90 + 20 > 100
    assert {k: redis_client.dump(k) for k in list(redis_client.scan_iter("quota:*"))} == before


def test_settlement_refunds_and_charges_the_reserved_buckets(redis_client: redis.Redis) -> None:
    store = QuotaStore(redis_client)
    limits = small_limits()
    granted = reserve(store, limits, T0, 50)
    assert isinstance(granted, Reservation)
    store.settle(granted, 20)
    minute = limits[1].key, limits[1].window.buckets(T0)[0]
    assert int(redis_client.hget(*minute) or 0) == 20
    assert int(redis_client.hget(limits[2].key, "used") or 0) == 20
    charged = reserve(store, limits, T0 + SECOND, 10)
    assert isinstance(charged, Reservation)
    store.settle(charged, 30)  # used more than estimated: charged on top
    assert int(redis_client.hget(*minute) or 0) == 50


def test_a_charge_that_recreates_an_expired_window_gives_it_a_ttl(redis_client: redis.Redis) -> None:
    """A settlement landing after its window's hash expired writes the bucket again, and that
    hash must expire in its turn (a hash with no TTL would hold the bucket for ever)."""
    store = QuotaStore(redis_client)
    minute = Limit("openai", "tokens", ROLLING["minute"], 10**9)
    granted = reserve(store, [minute], T0, 10)
    assert isinstance(granted, Reservation)
    redis_client.delete(minute.key)  # the hash expired before the settlement came
    store.settle(granted, 25)
    assert redis_client.hget(minute.key, str(T0 // (10 * SECOND))) == b"15"
    assert 0 < redis_client.pttl(minute.key) <= minute.window.ttl_ms


def test_a_provider_without_caps_is_granted(redis_client: redis.Redis) -> None:
    """A provider the quota policy does not name (an own provider) counts against no window."""
    granted = reserve(QuotaStore(redis_client), [], T0, 10)
    assert isinstance(granted, Reservation) and granted.settle_keys == ()


def room_left(outcome: Reservation | Refusal) -> int:
    assert isinstance(outcome, Reservation)
    return dict(outcome.remaining)["openai tokens per minute"]


def test_a_settlement_of_an_older_bucket_counts_in_the_next_reservation(redis_client: redis.Redis) -> None:
    """The window's kept total follows a settlement that lands after a newer bucket opened."""
    store = QuotaStore(redis_client)
    minute = [Limit("openai", "tokens", ROLLING["minute"], 1000)]
    first = reserve(store, minute, T0, 10)
    assert room_left(reserve(store, minute, T0 + 10 * SECOND, 10)) == 1000 - 20  # a newer bucket
    assert isinstance(first, Reservation)
    store.settle(first, 50)  # the first bucket gains 40
    assert room_left(reserve(store, minute, T0 + 11 * SECOND, 1)) == 1000 - 60 - 1


def test_a_reservation_behind_the_newest_bucket_counts_in_the_next_one(redis_client: redis.Redis) -> None:
    """A replica whose clock runs behind writes an older bucket; the next reservation still sees it."""
    store = QuotaStore(redis_client)
    minute = [Limit("openai", "tokens", ROLLING["minute"], 1000)]
    assert room_left(reserve(store, minute, T0 + 10 * SECOND, 10)) == 1000 - 10
    # Its window ends with the bucket before the newest, so it does not count the newest one.
    assert room_left(reserve(store, minute, T0 + 5 * SECOND, 20)) == 1000 - 20
    assert room_left(reserve(store, minute, T0 + 11 * SECOND, 1)) == 1000 - 30 - 1


def test_first_use_window_opens_with_the_first_request_and_closes_after_its_length(
    redis_client: redis.Redis,
) -> None:
    store = QuotaStore(redis_client)
    window = [Limit("anthropic", "tokens", subscription_window("5h", "first_use"), 100)]
    opened = T0 + 17 * MINUTE_MS
    assert isinstance(reserve(store, window, opened, 100), Reservation)
    refused = reserve(store, window, opened + 60 * MINUTE_MS, 1)
    assert isinstance(refused, Refusal)
    assert refused.retry_after_ms == 4 * 60 * MINUTE_MS
    assert isinstance(reserve(store, window, opened + 5 * 60 * MINUTE_MS, 100), Reservation)


def test_runtime_cap_replaces_the_policy_cap_while_it_lives(redis_client: redis.Redis) -> None:
    store = QuotaStore(redis_client)
    limit = Limit("openai", "requests", ROLLING["minute"], 100)
    redis_client.set(limit.runtime_cap_key, 2, px=60_000)
    results = [reserve(store, [limit], T0, 1) for _ in range(3)]
    assert [isinstance(r, Reservation) for r in results] == [True, True, False]
    redis_client.delete(limit.runtime_cap_key)
    assert isinstance(reserve(store, [limit], T0, 1), Reservation)


WORKERS, ROUNDS, ESTIMATE = 4, 120, 40


def _hammer(
    url: str,
    limits: list[Limit],
    rounds: int,
    refunds: bool,
    start: Barrier,
    results: multiprocessing.Queue[tuple[int, int, int]],
) -> None:
    """Reserve ``rounds`` times (estimate 40 tokens); settle each grant at 40, or 25..40 with ``refunds``."""
    store = QuotaStore(sync_redis(url))
    store.reserve(limits, T0, provider="grok", model="warm-up", tokens=0, requests=0)  # load the script
    granted = refused = tokens = 0
    start.wait(timeout=60)  # every process starts reserving at once
    for i in range(rounds):
        outcome = store.reserve(limits, T0 + i, provider="grok", model="grok-3-mini", tokens=ESTIMATE)
        if isinstance(outcome, Reservation):
            actual = 25 + i % 16 if refunds else ESTIMATE  # never above the estimate: no cap can be passed
            store.settle(outcome, actual)
            granted, tokens = granted + 1, tokens + actual
        else:
            refused += 1
    results.put((granted, refused, tokens))


def _contend(url: str, limits: list[Limit], *, refunds: bool) -> tuple[int, int, int]:
    """Four processes released together by a barrier: total (granted, refused, settled tokens)."""
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[int, int, int]] = ctx.Queue()
    start = ctx.Barrier(WORKERS)
    workers = [
        ctx.Process(target=_hammer, args=(url, limits, ROUNDS, refunds, start, results))
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    granted, refused, tokens = (sum(column) for column in zip(*outcomes, strict=True))
    assert granted + refused == WORKERS * ROUNDS
    return granted, refused, tokens


def _bucket_total(client: redis.Redis, metric: str, window: str) -> int:
    return sum(bucket_values(client.hgetall(f"quota:{{grok}}:{metric}:{window}")).values())


def test_concurrent_processes_stop_exactly_at_the_request_cap(
    any_redis: RedisServer | LocalCluster, redis_client: redis.Redis
) -> None:
    """480 attempts at once against 150 requests a minute: the request cap binds, the token cap holds."""
    request_cap, token_cap = 150, 8_000  # 150 * 40 = 6,000 tokens: the token cap never binds
    limits = [
        Limit("grok", "requests", ROLLING["minute"], request_cap),
        Limit("grok", "tokens", ROLLING["day"], token_cap),
    ]
    granted, refused, tokens = _contend(any_redis.url, limits, refunds=True)
    assert granted == request_cap and refused == WORKERS * ROUNDS - request_cap
    assert _bucket_total(redis_client, "requests", "minute") == granted
    assert _bucket_total(redis_client, "tokens", "day") == tokens <= token_cap


def test_concurrent_processes_never_pass_the_token_cap(
    any_redis: RedisServer | LocalCluster, redis_client: redis.Redis
) -> None:
    """The same race against a token cap that binds long before the (unreachable) request cap."""
    request_cap, token_cap = 10_000, 4_000  # 4,000 / 40 = 100 grants, far below 480 attempts
    limits = [
        Limit("grok", "requests", ROLLING["minute"], request_cap),
        Limit("grok", "tokens", ROLLING["day"], token_cap),
    ]
    granted, refused, tokens = _contend(any_redis.url, limits, refunds=False)
    # Each grant holds exactly 40 tokens, so the cap allows exactly 100 grants.
    assert granted == token_cap // ESTIMATE and refused == WORKERS * ROUNDS - granted, (granted, refused)
    assert tokens == token_cap
    assert _bucket_total(redis_client, "requests", "minute") == granted
    assert _bucket_total(redis_client, "tokens", "day") == tokens


def test_a_replayed_settlement_changes_nothing(redis_client: redis.Redis) -> None:
    """A settlement whose reply was lost is replayed later: it must not apply twice."""
    store = QuotaStore(redis_client)
    limits = small_limits()
    granted = reserve(store, limits, T0, 50)
    assert isinstance(granted, Reservation)
    store.settle(granted, 20)
    store.settle(granted, 20)
    minute = limits[1].key, limits[1].window.buckets(T0)[0]
    assert int(redis_client.hget(*minute) or 0) == 20
    marker = granted.marker_key
    assert marker.startswith("symphony:reservation:{openai}:") and 0 < redis_client.pttl(marker) <= 600_000


def test_a_reservation_whose_reply_was_lost_is_cancelled_only_if_it_was_made(
    redis_client: redis.Redis,
) -> None:
    from symphony.quotas.store import Amounts, plan_reservation

    store = QuotaStore(redis_client)
    limits = small_limits()
    made = plan_reservation(limits, T0, Amounts(40))
    redis_client.evalsha(  # the script ran; pretend its reply never came back
        redis_client.script_load(RESERVE_LUA), len(made.keys), *made.keys, *made.args
    )
    never_made = plan_reservation(limits, T0, Amounts(25))
    minute = limits[1].key, limits[1].window.buckets(T0)[0]
    assert int(redis_client.hget(*minute) or 0) == 40
    store.cancel(made.unconfirmed("openai", "m"))
    store.cancel(never_made.unconfirmed("openai", "m"))
    store.cancel(made.unconfirmed("openai", "m"))  # a replay of the cancel changes nothing
    assert int(redis_client.hget(*minute) or 0) == 0
    assert int(redis_client.hget(limits[2].key, "used") or 0) == 0
    bucketed = [
        k for k in redis_client.scan_iter("quota:{openai}:requests:*") if not redis_client.hexists(k, "start")
    ]
    assert sum(sum(bucket_values(redis_client.hgetall(k)).values()) for k in bucketed) == 0


def test_a_grant_says_what_room_each_of_its_windows_had_left_in_redis_and_locally(
    redis_client: redis.Redis,
) -> None:
    limits = small_limits()
    names = [limit.name for limit in limits]
    for store in (QuotaStore(redis_client), LocalQuotaStore()):
        first = store.reserve(limits, T0, provider="openai", model="gpt-4o-mini", tokens=40)
        second = store.reserve(limits, T0 + 1000, provider="openai", model="gpt-4o-mini", tokens=25)
        assert isinstance(first, Reservation) and isinstance(second, Reservation)
        assert first.remaining == tuple(zip(names, [4, 60, 110], strict=True))
        assert second.remaining == tuple(zip(names, [3, 35, 85], strict=True))
        redis_client.flushdb()
