"""Concurrent reservations against the same limits go to Redis together, as one script call.

A reservation that finds no call for its limits (a ``Layout``) in flight goes at once, alone, so one
alone waits no longer than it would without batches. One that finds a call in flight waits, with
the others that come meanwhile, and they go together (group commit): at the end of the event loop's
turn while fewer than two calls are in flight, else as soon as one returns. Under concurrency the
script then reads and writes each window once per batch instead of once per reservation, and the
process sends one command instead of many. Each reservation in a batch is still checked, and
granted or refused, on its own, in the order it arrived (``RESERVE_LUA``).

The two calls in flight share the reservations evenly: a batch takes at most half of those in
flight and waiting. Otherwise the split a burst happened to start with stays: with 16 clients, a
call of one and a call of fifteen took turns, two thirds of the calls carried one reservation, and
while Redis ran the fifteen the process had only one reply to read (grants ran 0.33-0.51x an
``INCR`` from run to run, by which split each started with).

A batch is planned at the latest time any of its reservations asked at, so no window's bucket goes
backwards; a reservation whose caller was cancelled while it waited is left out of its batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from symphony.quotas.store import (
    Amounts,
    Arg,
    Layout,
    Refusal,
    Reservation,
    ReservationLost,
    ReservePlan,
    plan_batch,
    writes_refused,
)
from symphony.redis_server import REDIS_ERRORS

# Runs RESERVE_LUA with these keys and arguments; its reply.
ReserveCall = Callable[[list[str], list[Arg]], Awaitable[Any]]
Outcome = Reservation | Refusal


# Not frozen, as no one changes them: a frozen dataclass sets each field through object.__setattr__,
# which made building these two records cost more than the rest of a reservation's bookkeeping here.
@dataclass(slots=True)
class Request:
    """One reservation asked for: what it counts, when, and for whom (provider, model)."""

    reserved: Amounts
    now_ms: int
    provider: str
    model: str


@dataclass(slots=True)
class _Waiting:
    request: Request
    answer: asyncio.Future[Outcome]


# Calls in flight per layout: two, so the process reads one call's replies while Redis runs the next.
DEPTH = 2


class ReservationBatches:
    def __init__(self, call: ReserveCall, depth: int = DEPTH) -> None:
        self._call = call
        self._depth = depth
        self._calls: dict[Layout, int] = {}  # calls in flight
        self._carried: dict[Layout, int] = {}  # the reservations those calls carry
        self._waiting: dict[Layout, list[_Waiting]] = {}  # for a call of their layout
        self._sending: set[asyncio.Task[None]] = set()  # batches of waiters in flight (kept referenced)

    async def reserve(self, layout: Layout, request: Request) -> Outcome:
        """Reserve ``request`` now if no call of its layout is in flight, else with the next batch.

        Raises ``ReservationLost`` when Redis failed during the call that carried it."""
        if layout not in self._calls and layout not in self._waiting:
            return await self._alone(layout, request)
        answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(layout)
        if waiting is None:  # sent once this turn's reservations have joined it, if a call is free
            waiting = self._waiting[layout] = []
            asyncio.get_running_loop().call_soon(self._send_waiting, layout)
        waiting.append(_Waiting(request, answer))
        return await answer

    async def _alone(self, layout: Layout, request: Request) -> Outcome:
        self._started(layout, 1)
        try:
            [outcome] = await self._send(layout, [request])
        finally:
            self._ended(layout, 1)
        if isinstance(outcome, ReservationLost):
            raise outcome
        return outcome

    def _started(self, layout: Layout, carried: int) -> None:
        self._calls[layout] = self._calls.get(layout, 0) + 1
        self._carried[layout] = self._carried.get(layout, 0) + carried

    def _ended(self, layout: Layout, carried: int) -> None:
        """A call of ``layout`` ended: send who waits once the callers it answered have run (those that
        reserve again at once join this batch instead of waiting for the next)."""
        calls = self._calls[layout] - 1
        if calls:
            self._calls[layout] = calls
            self._carried[layout] -= carried
        else:
            del self._calls[layout], self._carried[layout]
        if layout in self._waiting:  # else whoever comes next finds no call in flight and goes at once
            asyncio.get_running_loop().call_soon(self._send_waiting, layout)

    def _send_waiting(self, layout: Layout) -> None:
        """Send who waits, in calls of at most half of those in flight and waiting, while a call is free."""
        while layout in self._waiting and self._calls.get(layout, 0) < self._depth:
            waiting = self._waiting[layout]
            share = -(-(self._carried.get(layout, 0) + len(waiting)) // self._depth)  # rounded up
            batch, rest = waiting[:share], waiting[share:]
            if rest:
                self._waiting[layout] = rest
            else:
                del self._waiting[layout]
            self._started(layout, len(batch))
            task = asyncio.get_running_loop().create_task(self._send_batch(layout, batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_batch(self, layout: Layout, waiting: list[_Waiting]) -> None:
        live = [each for each in waiting if not each.answer.done()]  # done: cancelled while it waited
        try:
            outcomes = await self._send(layout, [each.request for each in live]) if live else []
        except BaseException as exc:
            for each in live:
                if not each.answer.done():
                    each.answer.set_exception(exc)
            self._ended(layout, len(waiting))
            raise
        for each, outcome in zip(live, outcomes, strict=True):
            if each.answer.done():
                continue
            if isinstance(outcome, ReservationLost):
                each.answer.set_exception(outcome)
            else:
                each.answer.set_result(outcome)
        self._ended(layout, len(waiting))  # after the answers: their callers run before the next batch goes

    async def _send(self, layout: Layout, requests: Sequence[Request]) -> list[Outcome | ReservationLost]:
        """One call for ``requests``: each one's outcome, or ``ReservationLost`` for all if Redis failed."""
        plan = plan_batch(layout, max(r.now_ms for r in requests), [r.reserved for r in requests])
        try:
            replies = await self._call(plan.keys, plan.args)
        except REDIS_ERRORS as exc:
            return _lost(plan, requests, exc)
        except redis.ResponseError as exc:
            refused = writes_refused(exc)
            if refused is None:
                raise
            return _lost(plan, requests, refused)
        return [*plan.outcomes(replies, [(r.provider, r.model) for r in requests])]


def _lost(
    plan: ReservePlan, requests: Sequence[Request], cause: BaseException
) -> list[Outcome | ReservationLost]:
    lost: list[Outcome | ReservationLost] = []
    for index, r in enumerate(requests):
        error = ReservationLost(plan.unconfirmed(r.provider, r.model, index))
        error.__cause__ = cause
        lost.append(error)
    return lost
