"""A quota lease: one Redis reservation of several requests' worth, granted from in process.

Reserving and settling every request in Redis costs a request two round trips and two script calls.
A lease reserves ``size`` requests at once (their requests, ``size`` times the request's estimated
tokens and cost) with the same script, so Redis counts all of it before any is used and every cap
holds across replicas exactly as a request's reservation does. The proxy then grants requests of the
same arm from it without asking Redis, adding up what each really used, and settles the lease once
with the sums (requests included: what was leased and not used goes back).

A lease ends before the next bucket boundary of any of its windows (and before a first-use window
closes), so its usage counts in the buckets it happened in, and after ``LEASE_MAX_S`` of real time,
so Redis never lags what was used by more than that. The gate sizes a lease from the room the last
reservation saw (``lease_size``): none near a cap, where a refusal must be exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from symphony.quotas import Limit, Reservation
from symphony.quotas.store import Amounts

# A lease takes at most this share of the room left in any window (1/16): leases of other replicas and
# processes still find room, and near a cap the gate reserves request by request.
LEASE_HEADROOM = 16
LEASE_MAX_S = 0.25  # real time a lease grants for before it is settled


def lease_size(most: int, room: Sequence[int], limits: Sequence[Limit], tokens: int, cost_micros: int) -> int:
    """How many requests of this size to lease: at most ``most``, and no more than 1/LEASE_HEADROOM
    of the ``room`` any limit's window had (the last reservation's view); below 2, none. No lease for an
    arm without limits: there is nothing to count, and a lease of nothing would cost a call a request."""
    if not limits:
        return 0
    size, request = most, Amounts(tokens, cost_micros)
    for limit, left in zip(limits, room, strict=True):
        amount = request.of(limit.metric)
        if amount > 0:
            size = min(size, left // (LEASE_HEADROOM * amount))
    return size if size >= 2 else 0


def lease_ends_ms(limits: Sequence[Limit], reservation: Reservation, now_ms: int) -> int:
    """The event time before which every request of the lease counts in the buckets it reserved: the
    next bucket boundary of each window, a first-use window's close."""
    ends = math.inf
    for index, limit in enumerate(limits):
        window = limit.window
        if window.reset == "first_use":
            start = reservation.settle_args[3 * index + 1]
            ends = min(ends, start + window.length_ms)
        elif window.reset == "month":
            ends = min(ends, now_ms + (window.resets_in_ms(now_ms) or 0))
        else:
            ends = min(ends, (now_ms // window.sub_ms + 1) * window.sub_ms)
    return int(ends) if ends != math.inf else now_ms


@dataclass(slots=True, eq=False)
class Lease:
    """What a lease has left to grant, and what its grants used."""

    reservation: Reservation  # the lease's own, in Redis
    limits: tuple[Limit, ...]
    ends_ms: int  # event time: no grant at or after
    expires_at: float  # monotonic: no grant at or after
    requests_left: int
    tokens_left: int
    cost_left: int
    in_flight: int = 0  # granted, not yet settled
    closed: bool = False  # grants no more; settled once nothing is in flight
    # What the settled grants really used.
    used_requests: int = 0
    used_tokens: int = 0
    used_cost: int = 0

    @staticmethod
    def of(reservation: Reservation, limits: tuple[Limit, ...], now_ms: int, expires_at: float) -> Lease:
        leased = reservation.reserved
        ends = lease_ends_ms(limits, reservation, now_ms)
        return Lease(
            reservation, limits, ends, expires_at, leased.requests, leased.tokens, leased.cost_micros
        )

    def take(self, tokens: int, cost_micros: int, now_ms: int, now: float) -> tuple[int, ...] | None:
        """Grant one request of this estimate: the room each window has left, as this process sees it
        (Redis's room after the lease plus what the lease has not granted); None if it cannot."""
        if (
            self.closed
            or now_ms >= self.ends_ms
            or now >= self.expires_at
            or self.requests_left < 1
            or self.tokens_left < tokens
            or self.cost_left < cost_micros
        ):
            return None
        self.requests_left -= 1
        self.tokens_left -= tokens
        self.cost_left -= cost_micros
        self.in_flight += 1
        return self.room()

    def room(self) -> tuple[int, ...]:
        left = Amounts(self.tokens_left, self.cost_left, self.requests_left)
        return tuple(
            room + left.of(limit.metric)
            for room, limit in zip(self.reservation.room, self.limits, strict=False)
        )

    def record(self, tokens: int, cost_micros: int) -> None:
        """A grant's attempt is over: it used one request, ``tokens`` and ``cost_micros``."""
        self.used_requests += 1
        self.used_tokens += tokens
        self.used_cost += cost_micros
        self.in_flight -= 1

    @property
    def settleable(self) -> bool:
        return self.closed and self.in_flight == 0

    def actual(self) -> Amounts:
        """What the lease's grants used, to settle it with."""
        return Amounts(self.used_tokens, self.used_cost, self.used_requests)
