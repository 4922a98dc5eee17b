"""An in-process twin of the Redis quota store, for when Redis cannot be reached.

Same windows, same all-or-nothing reservation and settlement as
``symphony.quotas.store`` (see ``symphony.quotas.rules`` for the semantics), held in
dictionaries. It only sees this process's traffic, so each cap is scaled by the
share of traffic one replica may take (``share``, e.g. 1/3 with three replicas):
caps hold across replicas while every replica runs on its local limiter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from symphony.quotas.rules import Limit
from symphony.quotas.store import Amounts, Refusal, Reservation, reservation_of, retry_after_ms

MAX_REMEMBERED_SETTLEMENTS = 100_000


def _bucket_key(window_key: str, bucket: int | str) -> str:
    """One bucket of a window, as the local store keys it (Redis holds it as the hash's field)."""
    return f"{window_key}:{bucket}"


@dataclass
class LocalQuotaStore:
    share: float = 1.0
    _buckets: dict[str, int] = field(default_factory=dict)  # "<window key>:<bucket>" -> value
    _first_use: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (start, used)
    _expiry: dict[str, int] = field(default_factory=dict)  # key -> event time it expires
    _settled: dict[str, None] = field(default_factory=dict)  # recent settlements, oldest first

    def _cap(self, limit: Limit) -> int:
        return max(int(limit.cap * self.share), 1)

    def _values(self, limit: Limit, now: int) -> tuple[list[int], int]:
        if limit.window.reset == "first_use":
            start, used = self._first_use.get(limit.key, (-1, 0))
            if start < 0 or now >= start + limit.window.length_ms:
                return [0], 0
            return [used], start + limit.window.length_ms - now
        return [self._buckets.get(_bucket_key(limit.key, b), 0) for b in limit.window.buckets(now)], 0

    def reserve(
        self,
        limits: Sequence[Limit],
        now_ms: int,
        *,
        provider: str,
        model: str,
        tokens: int,
        cost_micros: int = 0,
        requests: int = 1,
    ) -> Reservation | Refusal:
        reserved = Amounts(tokens, cost_micros, requests)
        remaining: list[int] = []
        for limit in limits:
            amount = reserved.of(limit.metric)
            values, closes_in = self._values(limit, now_ms)
            cap = self._cap(limit)
            if amount > 0 and sum(values) + amount > cap:
                eta = retry_after_ms(limit, values, closes_in, amount, cap, now_ms)
                return Refusal(limit, cap, sum(values), eta, amount)
            remaining.append(cap - sum(values) - amount)
        starts = [self._write(limit, now_ms, reserved.of(limit.metric)) for limit in limits]
        return reservation_of(limits, now_ms, provider, model, reserved, starts, remaining=remaining)

    def _write(self, limit: Limit, now_ms: int, amount: int) -> int:
        """Add ``amount`` to the current bucket; the first-use window's start, else 0."""
        if limit.window.reset == "first_use":
            values, closes_in = self._values(limit, now_ms)
            start = now_ms + closes_in - limit.window.length_ms if closes_in else now_ms
            self._first_use[limit.key] = (start, values[0] + amount)
            self._expiry[limit.key] = now_ms + limit.window.ttl_ms
            return start
        key = _bucket_key(limit.key, limit.window.current_bucket(now_ms))
        if amount > 0:
            self._buckets[key] = self._buckets.get(key, 0) + amount
            self._expiry.setdefault(key, now_ms + limit.window.ttl_ms)
        return 0

    def settle(
        self,
        reservation: Reservation,
        actual_tokens: int,
        actual_cost_micros: int = 0,
        *,
        refund: bool = False,
    ) -> None:
        if reservation.token in self._settled:  # settled already, as in Redis: a replay changes nothing
            return
        self._settled[reservation.token] = None
        if len(self._settled) > MAX_REMEMBERED_SETTLEMENTS:
            del self._settled[next(iter(self._settled))]
        actual = reservation.actual(actual_tokens, actual_cost_micros, refund=refund)
        for window_key, delta, bucket, start, _ in reservation.changes(actual):
            if start:
                current, used = self._first_use.get(window_key, (-1, 0))
                if current == start:
                    self._first_use[window_key] = (start, max(used + delta, 0))
                continue
            key = _bucket_key(window_key, bucket)
            if delta > 0 or key in self._buckets:
                self._buckets[key] = max(self._buckets.get(key, 0) + delta, 0)

    def forget_expired(self, now_ms: int) -> None:
        """Drop buckets past their TTL (event time), as Redis would, so memory stays bounded."""
        self._expiry = {k: t for k, t in self._expiry.items() if t > now_ms}
        self._buckets = {k: v for k, v in self._buckets.items() if k in self._expiry}
        self._first_use = {k: v for k, v in self._first_use.items() if k in self._expiry}
