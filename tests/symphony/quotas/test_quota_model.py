"""A hypothesis state machine: the Redis quota script against a plain reference model of the windows.

On Redis, reservations are also made several at once through the proxy's asyncio store, whose
concurrent reservations share one script call (``symphony.quotas.batches``); the model takes them
one after another, in the order they were asked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from symphony.quotas import (
    ROLLING,
    AsyncQuotaStore,
    Limit,
    LocalQuotaStore,
    QuotaStore,
    Refusal,
    Reservation,
    subscription_window,
)
from symphony.redis_client import hot_path_redis
from symphony.redis_server import RedisServer

LIMITS = [
    Limit("openai", "requests", ROLLING["minute"], 5),
    Limit("openai", "tokens", ROLLING["minute"], 100),
    Limit("openai", "tokens", subscription_window("3m", "first_use"), 150),
    Limit("openai", "requests", subscription_window("2m", "fixed"), 8),
]
START = 1_767_225_600_000


@dataclass
class ReferenceWindows:
    """The semantics of symphony/quotas/rules.py, written plainly: dicts of buckets, no Redis."""

    buckets: dict[tuple[int, str], int] = field(default_factory=dict)
    first_use: dict[int, tuple[int, int]] = field(default_factory=dict)  # limit -> (start, used)

    def used(self, index: int, now: int) -> tuple[list[int], int]:
        limit = LIMITS[index]
        if limit.window.reset == "first_use":
            start, used = self.first_use.get(index, (-1, 0))
            if start < 0 or now >= start + limit.window.length_ms:
                return [0], 0
            return [used], start + limit.window.length_ms - now
        return [self.buckets.get((index, b), 0) for b in limit.window.buckets(now)], 0

    def rooms(self, now: int, tokens: int) -> dict[str, int]:
        """Per limit (by name), the room its window would have left after a grant of ``tokens``."""
        amounts = [1 if limit.metric == "requests" else tokens for limit in LIMITS]
        return {
            limit.name: limit.cap - sum(self.used(index, now)[0]) - amount
            for index, (limit, amount) in enumerate(zip(LIMITS, amounts, strict=True))
        }

    def reserve(self, now: int, tokens: int) -> tuple[bool, int | None, list[tuple[int, str, int]]]:
        for index, limit in enumerate(LIMITS):
            amount = 1 if limit.metric == "requests" else tokens
            values, _ = self.used(index, now)
            if amount > 0 and sum(values) + amount > limit.cap:
                return False, self.room_after(index, now, amount), []
        written = []
        for index, limit in enumerate(LIMITS):
            amount = 1 if limit.metric == "requests" else tokens
            if limit.window.reset == "first_use":
                start = self._open_window(index, now)
                self.first_use[index] = (start, self.used(index, now)[0][0] + amount)
                written.append((index, "first_use", start))
            else:
                bucket = limit.window.buckets(now)[0]
                if amount > 0:
                    self.buckets[(index, bucket)] = self.buckets.get((index, bucket), 0) + amount
                written.append((index, bucket, 0))
        return True, None, written

    def room_after(self, index: int, now: int, amount: int) -> int | None:
        """Ms until the refused window first has room for ``amount`` with no further writes: a search
        over the instants its buckets change (every bucket boundary after ``now``), not a formula."""
        limit = LIMITS[index]
        if amount > limit.cap:
            return None
        window = limit.window
        if window.reset == "first_use":
            start, _ = self.first_use[index]
            return start + window.length_ms - now
        boundary = now - now % window.sub_ms
        while boundary <= now + window.length_ms + window.sub_ms:
            boundary += window.sub_ms
            held = sum(self.buckets.get((index, bucket), 0) for bucket in window.buckets(boundary))
            if held + amount <= limit.cap:
                return boundary - now
        return None

    def _open_window(self, index: int, now: int) -> int:
        """The start of the first-use window in force at ``now``: the open one, or a new one."""
        start, _ = self.first_use.get(index, (-1, 0))
        return start if start >= 0 and now < start + LIMITS[index].window.length_ms else now

    def settle(self, written: list[tuple[int, str, int]], delta: int) -> None:
        for index, bucket, start in written:
            if LIMITS[index].metric != "tokens":
                continue
            if bucket == "first_use":
                current_start, used = self.first_use[index]
                if current_start == start:
                    self.first_use[index] = (start, max(used + delta, 0))
            elif delta > 0 or (index, bucket) in self.buckets:
                self.buckets[(index, bucket)] = max(self.buckets.get((index, bucket), 0) + delta, 0)


class QuotaMachine(RuleBasedStateMachine):
    """Drives a store (Redis, or the in-process twin) and the reference model with the same steps."""

    def __init__(self, store: QuotaStore | LocalQuotaStore) -> None:
        super().__init__()
        self.store = store
        self.model = ReferenceWindows()
        self.now = START
        self.settled: set[str] = set()

    granted = Bundle("granted")

    @rule(ms=st.integers(min_value=0, max_value=90_000))
    def advance(self, ms: int) -> None:
        self.now += ms

    @rule(target=granted, tokens=st.integers(min_value=0, max_value=70))
    def reserve(self, tokens: int) -> tuple[Reservation, list[tuple[int, str, int]]] | None:
        outcome = self.store.reserve(LIMITS, self.now, provider="openai", model="m", tokens=tokens)
        return self.check(outcome, tokens)

    def check(
        self, outcome: Reservation | Refusal, tokens: int
    ) -> tuple[Reservation, list[tuple[int, str, int]]] | None:
        """``outcome`` against the model's reservation of ``tokens`` now (which the model then holds)."""
        rooms = self.model.rooms(self.now, tokens)
        ok, eta, written = self.model.reserve(self.now, tokens)
        assert isinstance(outcome, Reservation) == ok
        if isinstance(outcome, Refusal):
            assert outcome.retry_after_ms == eta
            return None
        assert isinstance(outcome, Reservation)
        assert dict(outcome.remaining) == rooms  # what each window held, as the store summed it
        return outcome, written

    @rule(held=granted, actual=st.integers(min_value=0, max_value=90))
    def settle(self, held: tuple[Reservation, list[tuple[int, str, int]]] | None, actual: int) -> None:
        if held is None:
            return
        reservation, written = held
        self.store.settle(reservation, actual)
        if reservation.token not in self.settled:  # settling again is a replay: it changes nothing
            self.settled.add(reservation.token)
            self.model.settle(written, actual - reservation.tokens)

    def stored(self, limit: Limit, bucket: str) -> int:
        raise NotImplementedError

    def stored_first_use(self, key: str) -> tuple[int, int]:
        raise NotImplementedError

    @invariant()
    def store_holds_what_the_model_holds(self) -> None:
        # Only the buckets a window counts now: the store may delete the ones that left it for good.
        for (index, bucket), value in self.model.buckets.items():
            if bucket in LIMITS[index].window.buckets(self.now):
                assert self.stored(LIMITS[index], bucket) == value
        for index, start_used in self.model.first_use.items():
            assert self.stored_first_use(LIMITS[index].key) == start_used


class RedisQuotaMachine(QuotaMachine):
    def __init__(self, client: redis.Redis, url: str) -> None:
        client.flushdb()
        self.client = client
        self.url = url
        super().__init__(QuotaStore(client))

    @rule(
        target=QuotaMachine.granted,
        amounts=st.lists(st.integers(min_value=0, max_value=70), min_size=2, max_size=6),
    )
    def reserve_together(
        self, amounts: list[int]
    ) -> MultipleResults[tuple[Reservation, list[tuple[int, str, int]]] | None]:
        outcomes = asyncio.run(self._reserve_together(amounts))
        return multiple(
            *(self.check(outcome, tokens) for outcome, tokens in zip(outcomes, amounts, strict=True))
        )

    async def _reserve_together(self, amounts: list[int]) -> list[Reservation | Refusal]:
        client = hot_path_redis(self.url)
        store = AsyncQuotaStore(client)
        try:
            return await asyncio.gather(
                *(store.reserve(LIMITS, self.now, provider="openai", model="m", tokens=t) for t in amounts)
            )
        finally:
            await client.aclose()

    def stored(self, limit: Limit, bucket: str) -> int:
        return int(self.client.hget(limit.key, bucket) or 0)

    def stored_first_use(self, key: str) -> tuple[int, int]:
        stored = self.client.hgetall(key)
        return int(stored[b"start"]), int(stored[b"used"])


class LocalQuotaMachine(QuotaMachine):
    def __init__(self) -> None:
        self.local = LocalQuotaStore()
        super().__init__(self.local)

    def stored(self, limit: Limit, bucket: str) -> int:
        return self.local._buckets.get(f"{limit.key}:{bucket}", 0)

    def stored_first_use(self, key: str) -> tuple[int, int]:
        return self.local._first_use[key]


STEPS = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_redis_script_matches_the_reference_model(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    run_state_machine_as_test(lambda: RedisQuotaMachine(redis_client, redis_server.url), settings=STEPS)


def test_local_limiter_matches_the_reference_model() -> None:
    run_state_machine_as_test(LocalQuotaMachine, settings=STEPS)
