"""Concurrent reservations against the same limits go to Redis together, as one script call.

While two reservation calls for one set of limits (a ``Layout``) are in flight, the reservations that
arrive for the same limits wait, and go together in one call as soon as one returns (group commit).
A reservation that finds fewer in flight goes at once, so one alone waits no longer than before;
under concurrency the script reads and writes each window once per batch instead of once per
reservation, and the process sends one command instead of many. Each reservation in a batch is
still checked, and granted or refused, on its own, in the order it arrived (``RESERVE_LUA``).

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


@dataclass(frozen=True, slots=True)
class Request:
    """One reservation asked for: what it counts, when, and for whom (provider, model)."""

    reserved: Amounts
    now_ms: int
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class _Waiting:
    request: Request
    answer: asyncio.Future[Outcome]


# Calls in flight per layout: two, so the process reads one call's replies while Redis runs the next.
DEPTH = 2


class ReservationBatches:
    def __init__(self, call: ReserveCall, depth: int = DEPTH) -> None:
        self._call = call
        self._depth = depth
        self._in_flight: dict[Layout, int] = {}
        self._waiting: dict[Layout, list[_Waiting]] = {}  # for a call of their layout to end
        self._sending: set[asyncio.Task[None]] = set()  # batches of waiters in flight (kept referenced)

    async def reserve(self, layout: Layout, request: Request) -> Outcome:
        """Reserve ``request`` now, or with the next batch of its layout if ``depth`` calls are in flight.

        Raises ``ReservationLost`` when Redis failed during the call that carried it."""
        in_flight = self._in_flight.get(layout, 0)
        if in_flight >= self._depth or layout in self._waiting:  # in turn: never ahead of those waiting
            answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(layout, []).append(_Waiting(request, answer))
            return await answer
        self._in_flight[layout] = in_flight + 1
        try:
            [outcome] = await self._send(layout, [request])
        finally:
            self._ended(layout)
        if isinstance(outcome, ReservationLost):
            raise outcome
        return outcome

    def _ended(self, layout: Layout) -> None:
        """A call of ``layout`` ended: send who waits once the callers it answered have run (those that
        reserve again at once join this batch instead of waiting for the next)."""
        left = self._in_flight[layout] - 1
        if left:
            self._in_flight[layout] = left
        else:
            del self._in_flight[layout]
        if layout in self._waiting:  # else whoever comes next finds room and goes at once
            asyncio.get_running_loop().call_soon(self._send_waiting, layout)

    def _send_waiting(self, layout: Layout) -> None:
        in_flight = self._in_flight.get(layout, 0)
        if in_flight >= self._depth or layout not in self._waiting:
            return  # each call in flight sends them when it ends
        waiting = self._waiting.pop(layout)
        self._in_flight[layout] = in_flight + 1
        task = asyncio.get_running_loop().create_task(self._send_batch(layout, waiting))
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
            self._ended(layout)
            raise
        for each, outcome in zip(live, outcomes, strict=True):
            if each.answer.done():
                continue
            if isinstance(outcome, ReservationLost):
                each.answer.set_exception(outcome)
            else:
                each.answer.set_result(outcome)
        self._ended(layout)  # after the answers, so their callers run before the next batch goes

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
