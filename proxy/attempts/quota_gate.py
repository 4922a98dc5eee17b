"""The proxy's quota gate: admit an attempt or refuse it, settle after it, whatever Redis is doing.

``admit(arm, request)`` reserves the request's estimated tokens and its cost at the arm's
price, and answers a ``Grant`` or a typed refusal: ``AppBudget`` (the caller's app has
spent its budget at this arm's price; a cheaper arm may fit), ``AppRate`` (the app is over
its request or token rate; every arm counts the same), ``ProviderCap`` (this arm's provider
is over a cap) or ``Unavailable`` (fail-closed and Redis unreachable). When no arm could be
admitted, ``refused_error`` is the 429 those refusals imply: the app's ``budget_exhausted``
or ``app_rate_limited`` naming the window, else the providers' ``quota_exhausted``. A budget
refusal says what the request was estimated at (on its cheapest refused arm), what is left,
when the budget resets (``retry-after``), and the ``max_tokens`` that would fit.

Reservations go to Redis (one atomic script, ``symphony.quotas.store``), so caps hold
across every proxy replica. Where an arm's windows have room for many more requests, the provider's
reservation is a lease of several requests' worth (``proxy.attempts.quota_lease``), granted from in
process and settled once; near a cap every request reserves on its own.

An attempt counts against two scopes: the calling app's budgets and rate limits
(``app:<name>``, from its key) and the provider's caps. Each scope's keys share a
hash tag (``{app:<name>}``, ``{<provider>}``), so each scope is one Redis Cluster
slot, but the two are not: one script call over both would fail with CROSSSLOT on
a cluster. So the gate makes two calls, the app's scope first, then the provider's,
and when the provider refuses it refunds the app's reservation (its tokens, its
spend and its request). Between the two calls the app holds a reservation it may
give back, never the reverse, so an app's budget is never exceeded by the race;
at worst another request of the same app is refused for a few milliseconds by a
reservation that is then refunded. Settlement corrects both scopes from the
attempt's actual tokens and cost.

An app's request counts once however many arms serve it: the first attempt
reserves a request, fallback attempts reserve tokens and spend only.

When Redis cannot be reached the gate follows the configured rule: ``open`` keeps
serving on the in-process twin (``symphony.quotas.local``) holding a share of every
cap; ``closed`` refuses until Redis answers again. Either way it says so in the log once per interval, and
tries Redis again after a short pause, so it recovers by itself. Settlements of
Redis reservations that fail meanwhile are kept and replayed on recovery, so the
buckets end up holding what was really used.

Recovery drains those queues (lost reservations to cancel, settlements to replay)
one at a time: whichever finds Redis back first (a request's granted reservation, or
the gate's own probe, which keeps trying while nothing else reaches Redis) drains them,
and a second one that finds Redis back meanwhile leaves them to it. Back means taking
writes: a Redis that answers but refuses them (full, a replica, a failed save) answers a
PING and an early refusal (which writes nothing) alike, so neither counts; the probe
writes a key of its own (``AsyncQuotaStore.writable``). Redis can fail
again during a drain (the connections pooled before an outage die one by one as
they are used after it), and a request that then finds Redis back must not drain
the same queue beside it: both would apply the first entry and both remove one,
so one entry would be dropped unapplied. An entry leaves its queue before it is
applied and goes back to the front if applying fails or is cancelled; applying
twice is harmless (the scripts are idempotent), never applying is not.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from proxy import errors
from proxy.attempts.kept_tasks import KeptTasks
from proxy.attempts.quota_lease import LEASE_MAX_S, Lease, lease_size
from proxy.errors import retry_after_header
from proxy.routed_request import RoutedRequest
from proxy.routing.candidates import ESTIMATED_OUTPUT_TOKENS, Arm, TokenEstimate
from symphony import clock
from symphony.app_keys import USD_MICROS, AppKey
from symphony.clock import Clock
from symphony.durations import format_ms
from symphony.quotas import (
    AsyncQuotaStore,
    Limit,
    LocalQuotaStore,
    QuotaPolicy,
    Refusal,
    Reservation,
    ReservationLost,
)
from symphony.quotas.store import Amounts
from symphony.redis_server import REDIS_ERRORS

log = logging.getLogger(__name__)

RETRY_REDIS_AFTER_S = 1.0
RECOVERY_PROBE_S = 0.05  # the probe's first pause; it doubles up to RETRY_REDIS_AFTER_S
LOG_EVERY_S = 30.0
MAX_PENDING_SETTLEMENTS = 100_000
CLOSED_RETRY_AFTER_MS = 1000


@dataclass(frozen=True, slots=True)
class Held:
    """One scope's reservation, and where it was made."""

    reservation: Reservation
    local: bool  # reserved on the local limiter while Redis was unreachable


@dataclass(frozen=True, slots=True)
class Grant:
    reservation: Reservation  # the provider's (a lease's, for a grant from one)
    local: bool  # the provider's was reserved on the local limiter while Redis was unreachable
    app: Held | None = None  # the app's, when it has limits
    lease: Lease | None = None  # the provider's lease this grant was taken from
    leased_room: tuple[int, ...] = ()  # a leased grant's room per limit (``Lease.take``)

    @property
    def remaining(self) -> dict[str, float]:
        """What the reservations saw: per limit (the app's and the provider's), the room left after them."""
        provider = self.reservation
        room = self.leased_room if self.lease is not None else provider.room
        left = {name: float(r) for name, r in zip(provider.names, room, strict=False)}
        if self.app is not None:
            app = self.app.reservation
            left.update((name, float(r)) for name, r in zip(app.names, app.room, strict=False))
        return left


@dataclass(frozen=True, slots=True)
class AppScope:
    """The calling app's limits, as the gate reserves them."""

    name: str
    limits: Sequence[Limit]


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Fail-closed and Redis unreachable: no reservation can be made."""

    retry_after_ms: int = CLOSED_RETRY_AFTER_MS

    @property
    def message(self) -> str:
        return "the quota store is unreachable (fail-closed)"


@dataclass(frozen=True, slots=True)
class AppBudget:
    """The caller's app is over its spend budget at this arm's price: a cheaper arm may fit."""

    refusal: Refusal
    arm: Arm  # whose price made the estimate
    estimate: TokenEstimate
    resets_in_ms: int | None  # until the budget's window starts afresh (None: no set time)


@dataclass(frozen=True, slots=True)
class AppRate:
    """The caller's app is over its request or token rate: no arm can serve it now."""

    refusal: Refusal


@dataclass(frozen=True, slots=True)
class ProviderCap:
    """The arm's provider is over one of its caps: this arm is no candidate now."""

    refusal: Refusal


QuotaRefusal = AppBudget | AppRate | ProviderCap | Unavailable


class QuotaGuard:
    def __init__(
        self,
        client: aioredis.Redis,
        policy: QuotaPolicy,
        event_clock: Clock,
        *,
        fail_mode: Literal["open", "closed"],
        local_share: float,
        lease_requests: int = 0,
    ) -> None:
        self._store = AsyncQuotaStore(client)
        self._local = LocalQuotaStore(share=local_share)
        self._policy = policy
        self._limits: dict[tuple[str, str], tuple[Limit, ...]] = {}  # per arm, built once
        self._clock = event_clock
        self._fail_mode = fail_mode
        self._down_until = 0.0
        self._last_warning = -LOG_EVERY_S
        self._degraded = False
        # settlements that failed while Redis was down: (reservation, what it counted in the end)
        self._pending: deque[tuple[Reservation, Amounts]] = deque(maxlen=MAX_PENDING_SETTLEMENTS)
        # reservations whose reply Redis never sent: cancelled (if made) once it is back
        self._unconfirmed: deque[Reservation] = deque(maxlen=MAX_PENDING_SETTLEMENTS)
        self._draining = False  # one drain of those queues at a time
        self._probe: asyncio.Task[None] | None = None  # drains them when no request reaches Redis
        self._lease_requests = lease_requests  # the most requests one lease holds (0: no leases)
        self._leases: dict[tuple[str, str], Lease] = {}  # per arm, the lease granting now
        self._room: dict[tuple[str, str], tuple[int, ...]] = {}  # per arm, what its last reservation saw
        self._opening: set[tuple[str, str]] = set()  # arms whose lease is being reserved
        self._lease_settles = KeptTasks(log, "settling a quota lease failed")
        self.local_grants = 0  # reservations made on the local limiter
        self.local_tokens = 0  # tokens those reservations settled at (never reach Redis)

    @property
    def degraded(self) -> bool:
        """Redis was found unreachable and not yet found back (the drain of the backlog may still run)."""
        return self._degraded

    @property
    def backlog(self) -> int:
        """Reservations to cancel and settlements to replay once Redis is back (popped as each lands)."""
        return len(self._unconfirmed) + len(self._pending) + self._draining

    async def admit(self, arm: Arm, request: RoutedRequest, *, first_attempt: bool) -> Grant | QuotaRefusal:
        """Reserve ``request``'s estimate on ``arm``; its app's request counts on the first attempt only."""
        return await self.admit_estimate(arm, request.estimate, request.key, first_attempt=first_attempt)

    async def admit_estimate(
        self, arm: Arm, estimate: TokenEstimate, key: AppKey | None, *, first_attempt: bool
    ) -> Grant | QuotaRefusal:
        """``admit`` for a request that is no chat completion (an embedding): its estimate and key."""
        cost_micros = math.ceil(estimate.cost_usd(arm) * USD_MICROS)
        app = AppScope(key.scope, key.limits()) if key is not None else None
        tokens = estimate.tokens
        outcome = await self.reserve(
            arm.provider, arm.model, tokens, cost_micros=cost_micros, app=app, app_request=first_attempt
        )
        if not isinstance(outcome, Refusal):
            return outcome
        if app is None or outcome.limit.provider != app.name:
            return ProviderCap(outcome)
        if outcome.limit.metric != "usd_micros":
            return AppRate(outcome)
        return AppBudget(outcome, arm, estimate, outcome.limit.window.resets_in_ms(self._clock.now_ms()))

    async def reserve(
        self,
        provider: str,
        model: str,
        tokens: int,
        *,
        cost_micros: int = 0,
        app: AppScope | None = None,
        app_request: bool = True,
    ) -> Grant | Refusal | Unavailable:
        """Reserve the app's scope (if it has limits), then the provider's; all or nothing.

        ``app_request`` is False for a fallback attempt: the app's request was counted already.
        """
        held_app: Held | None = None
        if app is not None and app.limits:
            requests = 1 if app_request else 0
            outcome = await self._reserve(app.limits, app.name, "", tokens, cost_micros, requests)
            if not isinstance(outcome, Held):
                return outcome
            held_app = outcome
        arm = (provider, model)
        limits = self._limits.get(arm)
        if limits is None:
            limits = self._limits[arm] = self._policy.limits(provider, model)
        if self._lease_requests:
            leased = await self._leased(arm, limits, tokens, cost_micros, held_app)
            if leased is not None:
                return leased
        granted = await self._reserve(limits, provider, model, tokens, cost_micros, 1)
        if not isinstance(granted, Held):
            self._room.pop(arm, None)
            if held_app is not None:
                await self._settle(held_app, 0, 0, refund=True)
            return granted
        if granted.local:
            self.local_grants += 1
        elif self._lease_requests:
            self._room[arm] = granted.reservation.room
        return Grant(granted.reservation, granted.local, held_app)

    async def _leased(
        self, arm: tuple[str, str], limits: tuple[Limit, ...], tokens: int, cost_micros: int, app: Held | None
    ) -> Grant | None:
        """A grant from the arm's lease, or from a new one where the last reservation saw room for it."""
        lease = self._leases.get(arm)
        now = self._clock.now_ms()
        if lease is not None:
            room = lease.take(tokens, cost_micros, now, clock.monotonic())
            if room is not None:
                return Grant(lease.reservation, False, app, lease, room)
            self._close_lease(arm, lease)
        seen = self._room.get(arm)
        if seen is None or arm in self._opening or self._degraded or clock.monotonic() < self._down_until:
            return None
        size = lease_size(self._lease_requests, seen, limits, tokens, cost_micros)
        if not size:
            return None
        self._opening.add(arm)
        try:
            lease = await self._open_lease(arm, limits, Amounts(tokens * size, cost_micros * size, size))
        finally:
            self._opening.discard(arm)
        room = None if lease is None else lease.take(tokens, cost_micros, now, clock.monotonic())
        return None if lease is None or room is None else Grant(lease.reservation, False, app, lease, room)

    async def _open_lease(
        self, arm: tuple[str, str], limits: tuple[Limit, ...], leased: Amounts
    ) -> Lease | None:
        """Reserve a lease in Redis; None if it was refused (the request then reserves on its own, for an
        exact refusal) or Redis failed."""
        now = self._clock.now_ms()
        outcome = await self._reserve_in_redis(limits, now, *arm, leased)
        if not isinstance(outcome, Reservation):
            if outcome is not None:
                self._room.pop(arm, None)
            return None
        self._room[arm] = outcome.room
        lease = Lease.of(outcome, limits, now, clock.monotonic() + LEASE_MAX_S)
        self._leases[arm] = lease  # none was granting: only one lease of an arm is opened at a time
        asyncio.get_running_loop().call_later(LEASE_MAX_S, self._close_lease, arm, lease)
        return lease

    def _close_lease(self, arm: tuple[str, str], lease: Lease) -> None:
        """No more grants from ``lease``; settle it now if none is in flight, else when the last is."""
        if self._leases.get(arm) is lease:
            del self._leases[arm]
        if lease.closed:
            return
        lease.closed = True
        if lease.settleable:
            self._settle_lease_later(lease)

    def _settle_lease_later(self, lease: Lease) -> None:
        self._lease_settles.start(self._settle_to(Held(lease.reservation, local=False), lease.actual()))

    def _record(self, lease: Lease, tokens: int, cost_micros: int) -> None:
        lease.record(tokens, cost_micros)
        if lease.settleable:
            self._settle_lease_later(lease)

    async def close(self) -> None:
        """Settle every lease (call once the attempts are settled: a lease with grants in flight is
        settled by the last of them)."""
        for arm, lease in list(self._leases.items()):
            self._close_lease(arm, lease)
        await self._lease_settles.wait()

    async def _reserve(
        self, limits: Sequence[Limit], provider: str, model: str, tokens: int, cost_micros: int, requests: int
    ) -> Held | Refusal | Unavailable:
        now = self._clock.now_ms()
        if clock.monotonic() >= self._down_until:
            amounts = Amounts(tokens, cost_micros, requests)
            outcome = await self._reserve_in_redis(limits, now, provider, model, amounts)
            if isinstance(outcome, Reservation):
                return Held(outcome, local=False)
            if outcome is not None:
                return outcome
        if self._fail_mode == "closed":
            return Unavailable()
        self._local.forget_expired(now)
        local = self._local.reserve(
            limits,
            now,
            provider=provider,
            model=model,
            tokens=tokens,
            cost_micros=cost_micros,
            requests=requests,
        )
        return Held(local, local=True) if isinstance(local, Reservation) else local

    async def _reserve_in_redis(
        self, limits: Sequence[Limit], now: int, provider: str, model: str, amounts: Amounts
    ) -> Reservation | Refusal | None:
        """Reserve ``amounts`` in Redis; None when Redis failed meanwhile (the reservation is kept to cancel
        once it is back, and the gate is down)."""
        try:
            outcome = await self._store.reserve(
                limits,
                now,
                provider=provider,
                model=model,
                tokens=amounts.tokens,
                cost_micros=amounts.cost_micros,
                requests=amounts.requests,
            )
        except ReservationLost as lost:
            self._unconfirmed.append(lost.reservation)
            self._went_down(lost.__cause__ or lost)
            return None
        if isinstance(outcome, Reservation):  # written: a refusal writes nothing, proves nothing
            await self._recovered()
        return outcome

    def settle_leased(self, grant: Grant, actual_tokens: int, actual_cost_micros: int = 0) -> bool:
        """``settle`` a grant taken from a lease, with no app scope to settle in Redis, without waiting:
        its usage is added to the lease's (whose settlement, once due, runs as a task). False for any
        other grant, which ``settle`` must correct."""
        if grant.lease is None or grant.app is not None:
            return False
        self._record(grant.lease, actual_tokens, actual_cost_micros)
        return True

    async def settle(self, grant: Grant, actual_tokens: int, actual_cost_micros: int = 0) -> None:
        """Correct the provider's and the app's reservations to the attempt's actual usage."""
        if grant.lease is not None:
            self._record(grant.lease, actual_tokens, actual_cost_micros)
        else:
            await self._settle(Held(grant.reservation, grant.local), actual_tokens, actual_cost_micros)
        if grant.local:
            self.local_tokens += actual_tokens
        if grant.app is not None:
            await self._settle(grant.app, actual_tokens, actual_cost_micros)

    async def _settle(self, held: Held, tokens: int, cost_micros: int, *, refund: bool = False) -> None:
        if held.local:
            self._local.settle(held.reservation, tokens, cost_micros, refund=refund)
            return
        await self._settle_to(held, held.reservation.actual(tokens, cost_micros, refund=refund))

    async def _settle_to(self, held: Held, actual: Amounts) -> None:
        """Settle a Redis reservation at what it counted in the end; kept for replay if Redis fails."""
        try:
            await self._store.settle_to(held.reservation, actual)
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            self._pending.append((held.reservation, actual))

    def _went_down(self, exc: BaseException) -> None:
        self._down_until = clock.monotonic() + RETRY_REDIS_AFTER_S
        self._degraded = True
        if clock.monotonic() - self._last_warning >= LOG_EVERY_S:
            self._last_warning = clock.monotonic()
            rule = (
                f"fail-open on the local limiter ({self._local.share:.0%} of each cap)"
                if self._fail_mode == "open"
                else "fail-closed: refusing requests until it is back"
            )
            log.warning("quota store unreachable (%s); %s", exc.__class__.__name__, rule)
        self._start_probe()

    def _start_probe(self) -> None:
        """Drain the queues once Redis answers, even if no request comes to find out."""
        if self._probe is not None and not self._probe.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop: the next request recovers instead
            return
        self._probe = loop.create_task(self._probe_until_recovered())

    async def _probe_until_recovered(self) -> None:
        pause = RECOVERY_PROBE_S
        while self._degraded:
            await asyncio.sleep(pause)
            pause = min(pause * 2, max(RETRY_REDIS_AFTER_S, RECOVERY_PROBE_S))
            try:
                await self._store.writable()
            except REDIS_ERRORS:
                continue
            try:
                await self._recovered()
            except Exception:  # not a Redis outage: say so, and leave the queues to the next request
                log.exception("replaying quota settlements after an outage failed")
                return

    async def _recovered(self) -> None:
        if not self._degraded or self._draining:
            return  # nothing to do, or another coroutine is draining (it drains what is added meanwhile)
        self._degraded = False
        self._draining = True
        try:
            drained = await self._drain()
        finally:
            self._draining = False
        if drained is None:
            return
        cancelled, replayed = drained
        log.warning(
            "quota store reachable again: reservations back in Redis "
            "(%d settlements replayed, %d unanswered reservations cancelled)",
            replayed,
            cancelled,
        )

    async def _drain(self) -> tuple[int, int] | None:
        """Cancel the unanswered reservations, replay the kept settlements; None if Redis failed."""
        cancelled = replayed = 0
        while self._unconfirmed:
            reservation = self._unconfirmed.popleft()
            try:
                await self._store.cancel(reservation)
            except BaseException as exc:
                self._unconfirmed.appendleft(reservation)  # a cancel applied twice changes nothing
                if not isinstance(exc, REDIS_ERRORS):
                    raise
                self._went_down(exc)
                return None
            cancelled += 1
        while self._pending:
            settlement = self._pending.popleft()
            try:
                await self._store.settle_to(*settlement)
            except BaseException as exc:
                self._pending.appendleft(settlement)  # a settlement replayed twice changes nothing
                if not isinstance(exc, REDIS_ERRORS):
                    raise
                self._went_down(exc)
                return None
            replayed += 1
        return cancelled, replayed


def refused_error(app: str, refusals: Sequence[QuotaRefusal]) -> errors.ApiError:
    """The 429 for a request no arm was admitted for: the app's own limit first, else the providers'."""
    over_rate = [r.refusal for r in refusals if isinstance(r, AppRate)]
    if over_rate:
        return app_limited(app, over_rate)
    over_budget = [r for r in refusals if isinstance(r, AppBudget)]
    if over_budget:
        return budget_exhausted(app, over_budget)
    return quota_exhausted(
        [
            r.refusal if isinstance(r, ProviderCap) else r
            for r in refusals
            if not isinstance(r, AppBudget | AppRate)
        ]
    )


def quota_exhausted(refusals: Sequence[Refusal | Unavailable]) -> errors.ApiError:
    """Every candidate is over a cap: 429, retry after the earliest moment one has room again."""
    wait_s = _earliest_retry_s(refusals)
    reasons = "; ".join(dict.fromkeys(r.message for r in refusals))
    return errors.ApiError(
        429,
        f"Every candidate is over its quota ({reasons}).{_retry_after(wait_s)}",
        type_="rate_limit_exceeded",
        code="quota_exhausted",
        headers=retry_after_header(wait_s),
    )


def app_limited(app: str, refusals: Sequence[Refusal]) -> errors.ApiError:
    """The caller's app is over its own rate: 429, retry when the window has room again."""
    wait_s = _earliest_retry_s(refusals)
    limit, cap = refusals[0].limit, refusals[0].cap
    message = f"App `{app}` is over its limit of {cap} {limit.metric} per {limit.window.name}."
    message += _retry_after(wait_s)
    return errors.ApiError(
        429, message, type_="rate_limit_exceeded", code="app_rate_limited", headers=retry_after_header(wait_s)
    )


def budget_exhausted(app: str, budgets: Sequence[AppBudget]) -> errors.ApiError:
    """No arm fits the app's budget: what the cheapest was estimated at, what is left, when it resets."""
    cheapest = min(budgets, key=lambda budget: budget.refusal.requested)
    refusal = cheapest.refusal
    window = {"1d": "UTC day", "month": "calendar month (UTC)"}.get(
        refusal.limit.window.name, refusal.limit.window.name
    )
    left = max(refusal.cap - refusal.used, 0)
    resets = [b.resets_in_ms for b in budgets if b.resets_in_ms is not None]
    wait_s = _earliest_retry_s([b.refusal for b in budgets])
    if wait_s is None and resets:
        wait_s = min(resets) / 1000
    if left == 0:
        message = (
            f"App `{app}` has spent its budget for this {window}: {_usd(refusal.used)} of "
            f"{_usd(refusal.cap)}, with requests in flight counted at their estimate.{_resets(wait_s)}"
        )
    else:
        message = f"{_estimated(app, cheapest, window, left)} {_what_to_do(cheapest, left, wait_s)}"
    return errors.ApiError(
        429, message, type_="rate_limit_exceeded", code="budget_exhausted", headers=retry_after_header(wait_s)
    )


def _estimated(app: str, budget: AppBudget, window: str, left: int) -> str:
    estimate, refusal = budget.estimate, budget.refusal
    return (
        f"App `{app}` has {_usd(left)} left of its {_usd(refusal.cap)} budget for this {window} "
        f"(requests in flight count at their estimate), and this request is estimated at "
        f"{_usd(refusal.requested)} on its cheapest candidate, {budget.arm.name}: "
        f"{estimate.prompt_tokens:,} prompt tokens and {estimate.output_tokens:,} output tokens "
        f"(its max_tokens; {ESTIMATED_OUTPUT_TOKENS:,} when it sets none)."
    )


def _what_to_do(budget: AppBudget, left: int, wait_s: float | None) -> str:
    fits = _max_tokens_within(budget.arm, budget.estimate.prompt_tokens, left)
    lower = (
        f"Lower max_tokens to at most {fits:,} to fit what is left"
        if fits > 0
        else "Its prompt alone costs more than what is left: shorten it"
    )
    if budget.refusal.requested > budget.refusal.cap:
        return (
            f"The estimate is more than the whole budget, so waiting will not help. {lower}.{_resets(wait_s)}"
        )
    return f"{lower}, or wait.{_resets(wait_s)}"


def _max_tokens_within(arm: Arm, prompt_tokens: int, left_micros: int) -> int:
    """The largest answer (output tokens) whose estimate at ``arm``'s price fits ``left_micros``."""
    per_token = arm.price.output_per_mtok  # USD per million tokens: micro-USD per token
    room = left_micros - prompt_tokens * arm.price.input_per_mtok
    if room < 0:
        return 0
    return math.floor(room / per_token + 1e-9) if per_token > 0 else 0


def _usd(micros: int) -> str:
    return f"${micros / USD_MICROS:.4f}"


def _resets(wait_s: float | None) -> str:
    if wait_s is None:
        return ""
    return (
        f" The budget resets in {format_ms(math.ceil(wait_s) * 1000)} (retry-after: {math.ceil(wait_s)} s)."
    )


def _earliest_retry_s(refusals: Sequence[Refusal | Unavailable]) -> float | None:
    waits = [r.retry_after_ms for r in refusals if r.retry_after_ms is not None]
    return min(waits) / 1000 if waits else None


def _retry_after(wait_s: float | None) -> str:
    return f" Retry after {math.ceil(wait_s)} s." if wait_s is not None else ""
