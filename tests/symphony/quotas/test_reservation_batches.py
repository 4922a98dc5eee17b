"""Concurrent reservations against the same limits share one script call, and each is still judged alone.

Real Redis, the proxy's own client (``symphony.redis_client.hot_path_redis``); the number of calls comes
from Redis (``INFO commandstats``), the expected grants from the caps, reservation by reservation.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
import redis

from symphony.lua_script import LuaScript
from symphony.quotas import (
    ROLLING,
    AsyncQuotaStore,
    Limit,
    Refusal,
    Reservation,
    ReservationLost,
    bucket_values,
)
from symphony.quotas.batches import DEPTH, Request, ReservationBatches
from symphony.quotas.store import RESERVE_LUA, Amounts, Arg, layout_of
from symphony.redis_client import hot_path_redis
from symphony.redis_server import RedisServer

T0 = 1_767_225_600_000
REQUEST_CAP, TOKEN_CAP = 10, 1_000
LIMITS = [
    Limit("grok", "requests", ROLLING["minute"], REQUEST_CAP),
    Limit("grok", "tokens", ROLLING["day"], TOKEN_CAP),
]


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


def held(client: redis.Redis, limit: Limit) -> int:
    return sum(bucket_values(client.hgetall(limit.key)).values())


async def reserve_together(url: str, tokens: list[int]) -> list[Reservation | Refusal]:
    client = hot_path_redis(url)
    store = AsyncQuotaStore(client)
    try:
        return await asyncio.gather(
            *(store.reserve(LIMITS, T0, provider="grok", model="m", tokens=t) for t in tokens)
        )
    finally:
        await client.aclose()


def test_sixteen_reservations_at_once_take_three_or_four_calls_and_the_first_ten_are_granted(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    asyncio.run(reserve_together(redis_server.url, [1]))  # loads the script (EVALSHA, NOSCRIPT, EVAL)
    calls_before = evalsha_calls(redis_client)
    outcomes = asyncio.run(reserve_together(redis_server.url, [10] * 16))
    # The first goes alone; the fifteen that came meanwhile go in calls of at most half of the sixteen:
    # eight, then seven (or four and three, when both replies before them were read in one turn).
    assert DEPTH == 2 and evalsha_calls(redis_client) - calls_before in (3, 4)
    granted = [isinstance(o, Reservation) for o in outcomes]
    assert granted == [True] * (REQUEST_CAP - 1) + [False] * 7  # in order; the warm-up took one request
    assert held(redis_client, LIMITS[0]) == REQUEST_CAP
    assert held(redis_client, LIMITS[1]) == 1 + 10 * (REQUEST_CAP - 1)
    refusals = [o for o in outcomes if isinstance(o, Refusal)]
    assert {(r.limit.name, r.used, r.cap) for r in refusals} == {(LIMITS[0].name, REQUEST_CAP, REQUEST_CAP)}
    assert all(r.retry_after_ms is not None and 0 < r.retry_after_ms <= 60_000 for r in refusals)
    rooms = [dict(o.remaining)[LIMITS[0].name] for o in outcomes if isinstance(o, Reservation)]
    assert rooms == list(range(REQUEST_CAP - 2, -1, -1))  # each saw the ones before it in its batch
    tokens = {o.token for o in outcomes if isinstance(o, Reservation)}
    assert len(tokens) == REQUEST_CAP - 1  # one marker each: each is settled or cancelled on its own


def test_a_batch_refuses_one_that_does_not_fit_and_grants_a_later_one_that_does(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Each is judged against what the ones before it took, not stopped by a refusal before it."""
    outcomes = asyncio.run(reserve_together(redis_server.url, [400, 500, 300, 200, 100]))
    assert [isinstance(o, Reservation) for o in outcomes] == [True, True, False, False, True]
    assert held(redis_client, LIMITS[1]) == 400 + 500 + 100
    # Each grant's room left: the cap less the grants up to it; a refusal took nothing.
    rooms = [dict(o.remaining)[LIMITS[1].name] for o in outcomes if isinstance(o, Reservation)]
    assert rooms == [TOKEN_CAP - 400, TOKEN_CAP - 900, TOKEN_CAP - 1000]


def test_every_reservation_of_a_batch_that_lost_redis_is_lost(redis_server: RedisServer) -> None:
    async def scenario() -> list[BaseException | Reservation | Refusal]:
        client = hot_path_redis(redis_server.url)
        store = AsyncQuotaStore(client)
        await store.reserve(LIMITS, T0, provider="grok", model="m", tokens=1)
        redis_server.stop()
        try:
            return await asyncio.gather(
                *(store.reserve(LIMITS, T0, provider="grok", model="m", tokens=1) for _ in range(4)),
                return_exceptions=True,
            )
        finally:
            await client.aclose()

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, ReservationLost) for o in outcomes), outcomes
    lost = [o.reservation.token for o in outcomes if isinstance(o, ReservationLost)]
    assert len(set(lost)) == 4  # each cancelled on its own once Redis is back


@pytest.mark.parametrize("cancelled", [DEPTH, DEPTH + 1])
def test_a_reservation_cancelled_while_it_waits_is_left_out_of_its_batch(
    redis_server: RedisServer, redis_client: redis.Redis, cancelled: int
) -> None:
    redis_client.script_load(RESERVE_LUA)  # the calls in flight are the reservations themselves

    async def scenario() -> list[Reservation | Refusal | BaseException]:
        client = hot_path_redis(redis_server.url)
        store = AsyncQuotaStore(client)
        try:
            tasks = [
                asyncio.create_task(store.reserve(LIMITS, T0, provider="grok", model="m", tokens=1))
                for _ in range(DEPTH + 2)
            ]
            await asyncio.sleep(0)  # all asked: one in flight, the others waiting for the turn's end
            tasks[cancelled].cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await client.aclose()

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[cancelled], asyncio.CancelledError)
    assert sum(isinstance(o, Reservation) for o in outcomes) == DEPTH + 1
    assert held(redis_client, LIMITS[0]) == DEPTH + 1  # the cancelled one reserved nothing


def test_clients_that_reserve_again_at_once_share_the_calls_in_flight_evenly(
    redis_server: RedisServer,
) -> None:
    """With 16 clients, the two calls in flight carry eight each, whatever split the first burst made.

    Each call carries at most half of the reservations in flight and waiting (16 here), so none carries
    more than eight; without that a call of one and a call of fifteen took turns, most calls carried
    one reservation, and while Redis ran the fifteen the process had one reply to read."""
    clients, rounds = 16, 20
    limits = tuple(dataclasses.replace(limit, cap=10**12) for limit in LIMITS)  # out of reach

    async def scenario() -> list[int]:
        client = hot_path_redis(redis_server.url)
        script = LuaScript(client, RESERVE_LUA)
        carried: list[int] = []

        async def call(keys: list[str], args: list[Arg]) -> Any:
            carried.append(int(args[1]))  # RESERVE_LUA's ARGV[2]: how many reservations
            return await script(keys, args)

        batches, layout = ReservationBatches(call), layout_of(limits)

        async def reserve_again_and_again(first: int) -> None:
            for n in range(rounds):
                outcome = await batches.reserve(layout, Request(Amounts(1), T0 + first + n, "grok", "m"))
                assert isinstance(outcome, Reservation)

        try:
            await asyncio.gather(*(reserve_again_and_again(i * rounds) for i in range(clients)))
        finally:
            await client.aclose()
        return carried

    carried = asyncio.run(scenario())
    assert sum(carried) == clients * rounds
    assert max(carried) <= clients // DEPTH
    assert carried.count(1) <= len(carried) // 4, carried  # the first goes alone; before, two thirds did
