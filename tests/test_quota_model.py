"""A hypothesis state machine: the Redis quota script against a plain reference model of the windows."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from symphony.quota_store import QuotaStore, Refusal, Reservation, retry_after_ms
from symphony.quotas import ROLLING, Limit, subscription_window

LIMITS = [
    Limit("openai", "requests", ROLLING["minute"], 5),
    Limit("openai", "tokens", ROLLING["minute"], 100),
    Limit("openai", "tokens", subscription_window("3m", "first_use"), 150),
    Limit("openai", "requests", subscription_window("2m", "fixed"), 8),
]
START = 1_767_225_600_000


@dataclass
class ReferenceWindows:
    """The semantics of symphony/quotas.py, written plainly: dicts of buckets, no Redis."""

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

    def reserve(self, now: int, tokens: int) -> tuple[bool, int | None, list[tuple[int, str, int]]]:
        for index, limit in enumerate(LIMITS):
            amount = 1 if limit.metric == "requests" else tokens
            values, closes_in = self.used(index, now)
            if amount > 0 and sum(values) + amount > limit.cap:
                return False, retry_after_ms(limit, values, closes_in, amount, limit.cap, now), []
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
    def __init__(self, client: redis.Redis) -> None:
        super().__init__()
        client.flushdb()
        self.client = client
        self.store = QuotaStore(client)
        self.model = ReferenceWindows()
        self.now = START

    granted = Bundle("granted")

    @rule(ms=st.integers(min_value=0, max_value=90_000))
    def advance(self, ms: int) -> None:
        self.now += ms

    @rule(target=granted, tokens=st.integers(min_value=0, max_value=70))
    def reserve(self, tokens: int) -> tuple[Reservation, list[tuple[int, str, int]]] | None:
        outcome = self.store.reserve(LIMITS, self.now, provider="openai", model="m", tokens=tokens)
        ok, eta, written = self.model.reserve(self.now, tokens)
        assert isinstance(outcome, Reservation) == ok
        if isinstance(outcome, Refusal):
            assert outcome.retry_after_ms == eta
            return None
        assert isinstance(outcome, Reservation)
        return outcome, written

    @rule(held=granted, actual=st.integers(min_value=0, max_value=90))
    def settle(self, held: tuple[Reservation, list[tuple[int, str, int]]] | None, actual: int) -> None:
        if held is None:
            return
        reservation, written = held
        self.store.settle(reservation, actual)
        self.model.settle(written, actual - reservation.tokens)

    @invariant()
    def redis_holds_what_the_model_holds(self) -> None:
        for (index, bucket), value in self.model.buckets.items():
            assert int(self.client.get(LIMITS[index].key(bucket)) or 0) == value
        for index, (start, used) in self.model.first_use.items():
            stored = self.client.hgetall(LIMITS[index].key("current"))
            assert (int(stored[b"start"]), int(stored[b"used"])) == (start, used)


def test_reserve_and_settle_match_the_reference_model(redis_client: redis.Redis) -> None:
    run_state_machine_as_test(
        lambda: QuotaMachine(redis_client),
        settings=settings(max_examples=60, stateful_step_count=40, deadline=None),
    )
