"""The attempt loop: call the route's arms in order until one answers.

An attempt falls back to the next arm on a 429, a 5xx or any other provider-side
error, a connection error, and a first byte later than the time-to-first-token limit;
each outcome is told to ``proxy.routing.health`` (a 429 with the ``retry-after`` it sent and
whether its rate-limit headers show a limit used up), which decides what is ejected,
cooled or given less traffic. For a stream the
first upstream chunk is awaited before anything reaches the client, so a slow
provider is abandoned while the next can still serve. For a non-streamed answer the
first byte is the whole answer, so its limit is the first-token limit plus the
time the arm takes per token (``LatencyEstimates``) for the answer's size bound, capped at
``ANSWER_LIMIT_MS`` when set, so a provider that stalls a non-streamed answer is left for the next.
The request deadline bounds the whole loop; a 4xx that says the request itself is
bad (400, 413, 422) goes back to the client at once.

``run`` returns what happened (``Attempts``): the answer, the stream or the last
failure, the failed attempts, and one ``Usage`` event per finished attempt (attempt
number, status, ``fallback_from`` = the arm tried before it). It returns the events
instead of emitting them, so the gateway can emit the decision, which records the
fallbacks, first; a served stream's event comes at its end, after the decision, so the
stream's ``finish`` (bound here, called by ``proxy.attempts.stream_relay``) emits it.

Each attempt is first admitted by the quota gate (``proxy.attempts.quota_gate``), which
reserves the request's estimate at the arm's price, settled afterwards from the actual
usage and cost. An arm the gate refuses is skipped, except that over the app's request
or token rate no arm can serve, so the loop stops. When nothing could be attempted,
the gate's refusals make the error (``refused_error``).

With tracing on (a ``tracer``), each admission gets a span, and each attempt a CLIENT span
whose ``traceparent`` goes on the upstream request; it ends with the attempt's usage event (a
served stream's at the stream's end). The quota snapshot of the decision (``Attempts.quota_remaining``)
is the last grant's, traced or not.

A provider's error body reaches the client only scrubbed (``proxy.edge.scrub``), and a
provider that refuses Symphony's own key (401, 403) is the operator's problem, not
the caller's: it is a 502 ``upstream_auth_error`` that says nothing of the key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial

from opentelemetry.trace import Span

from proxy import errors, tracing
from proxy.adapters.base import (
    Adapter,
    Answer,
    StreamTranslator,
    UnsupportedFeature,
    UpstreamFailure,
    UpstreamRequest,
)
from proxy.attempts.attempt import Attempt
from proxy.attempts.exchange_ring import ExchangeRing
from proxy.attempts.kept_tasks import KeptTasks
from proxy.attempts.quota_gate import AppRate, Grant, QuotaGuard, QuotaRefusal, refused_error
from proxy.attempts.upstream import TRANSPORT_ERRORS, HttpClient, UpstreamResponse, is_timeout, send
from proxy.edge.scrub import Scrubber
from proxy.emitter import EventEmitter
from proxy.errors import retry_after_header
from proxy.metrics import ProxyMetrics
from proxy.recorded_spans import RecordingTracer
from proxy.routed_request import RoutedRequest
from proxy.routing.candidates import Arm
from proxy.routing.health import Health, Outcome
from proxy.routing.latency import LatencyEstimates
from proxy.routing.router import Route
from symphony.app_keys import USD_MICROS
from symphony.clock import Clock, monotonic
from symphony.events import AttemptStatus, Usage

logger = logging.getLogger(__name__)

# Provider answers that say the request itself is wrong: another provider would refuse it too.
CLIENT_ERRORS = frozenset({400, 413, 422})
# How long a stopping proxy waits for its settlements under way (Redis answers in milliseconds; one
# that is away makes the quota gate queue them for later instead).
SETTLE_DRAIN_S = 5.0
# Provider answers that refuse Symphony's credentials for that provider.
UPSTREAM_AUTH_ERRORS = frozenset({401, 403})


@dataclass(frozen=True, slots=True)
class Tried:
    """An attempt that failed, as the decision and the native API report it."""

    arm: Arm
    status: AttemptStatus
    http_status: int


@dataclass(frozen=True, slots=True)
class UpstreamStream:
    """A stream whose first chunk has arrived; nothing has reached the client yet.

    ``finish(status)`` ends its attempt (the usage event, settlement, health), once, whatever
    ends the stream; it is bound when the stream is made, so the relay needs nothing else.
    """

    arm: Arm
    translator: StreamTranslator
    response: UpstreamResponse
    chunks: AsyncIterator[bytes]
    first: bytes
    finish: Callable[[AttemptStatus], None]


@dataclass(frozen=True, slots=True)
class Interrupted:
    """Something was raised once an attempt had started (the client going away cancels the
    request); the caller logs the attempts made, then raises ``error`` again."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class Attempts:
    """What the loop did for one request."""

    result: Answer | UpstreamStream | UpstreamFailure | Interrupted
    tried: tuple[Tried, ...]  # failed attempts, in order
    usages: tuple[Usage, ...]  # finished attempts' events (a served stream's is emitted at its end)
    served: Arm | None  # the arm that answered
    granted: Grant | None = None  # the last attempt's quota grant (the served one's, if any)

    @property
    def attempted(self) -> bool:
        return bool(self.usages) or self.served is not None

    @property
    def quota_remaining(self) -> dict[str, float]:
        """What the last reservation saw: per limit, the room left once it was made."""
        return self.granted.remaining if self.granted is not None else {}


@dataclass(frozen=True, slots=True)
class _Call:
    """One attempt in the making: the arm, how to reach it, what to send, how it is timed."""

    arm: Arm
    adapter: Adapter
    upstream: UpstreamRequest
    attempt: Attempt
    grant: Grant
    span: Span | None  # the attempt's CLIENT span; None with tracing off
    metrics: ProxyMetrics | None = None

    @property
    def request(self) -> UpstreamRequest:
        """What to send: with tracing on, the attempt's span travels as the request's ``traceparent``."""
        if self.span is None:
            return self.upstream
        upstream = self.upstream  # built, not replace()d: replace() inspects the fields each call (4 us)
        headers = {**upstream.headers, **tracing.trace_headers(self.span)}
        return UpstreamRequest(upstream.url, headers, upstream.body)

    def end_span(self, usage: Usage | None, *, stream: bool) -> None:
        """The attempt's latency into its histogram and its span ended, from its usage event;
        nothing when the event was made already."""
        if usage is None:
            return
        if self.metrics is not None:
            self.metrics.attempt_finished(usage, self.span)
        if self.span is not None:
            tracing.end_attempt(self.span, usage, stream=stream)


@dataclass(slots=True)
class _Record:
    """What the loop has done so far for one request (the loop's own, turned into ``Attempts``)."""

    tried: list[Tried] = field(default_factory=list)
    usages: list[Usage] = field(default_factory=list)
    served: Arm | None = None
    granted: Grant | None = None

    def add(self, usage: Usage | None) -> None:
        if usage is not None:
            self.usages.append(usage)

    def attempts(self, result: Answer | UpstreamStream | UpstreamFailure | Interrupted) -> Attempts:
        return Attempts(result, tuple(self.tried), tuple(self.usages), self.served, self.granted)


@dataclass(slots=True)
class _Skipped:
    """Why arms were not attempted: what ``ApiError`` answers a request none was attempted for."""

    unsupported: UnsupportedFeature | None = None  # the first adapter refusal
    untranslatable: bool = False  # an adapter failed to map the body
    refusals: list[QuotaRefusal] = field(default_factory=list)

    @property
    def app_over_rate(self) -> bool:
        """The app is over its request or token rate: every arm counts the same, stop."""
        return bool(self.refusals) and isinstance(self.refusals[-1], AppRate)


def local_failure(status: AttemptStatus, http_status: int, message: str, code: str) -> UpstreamFailure:
    return UpstreamFailure(status, http_status, None, errors.error_body(message, "api_error", None, code))


def client_safe(arm: Arm, failure: UpstreamFailure, scrubber: Scrubber) -> UpstreamFailure:
    """A provider's failure as a client may see it: scrubbed, and no word of Symphony's key."""
    if failure.http_status in UPSTREAM_AUTH_ERRORS:
        logger.warning("%s refused Symphony's key for it (HTTP %d)", arm.provider, failure.http_status)
        body = errors.error_body(
            f"`{arm.provider}` refused the proxy's credentials for it; the operator must check its key.",
            "api_error",
            None,
            "upstream_auth_error",
        )
        return UpstreamFailure("error", 502, None, body, failure.rate_limit)
    body = scrubber.bytes(failure.body)
    if body is failure.body:
        return failure
    return replace(failure, body=body)


class AttemptLoop:
    def __init__(
        self,
        http: HttpClient,
        adapters: Mapping[str, Adapter],
        health: Health,
        latency: LatencyEstimates,
        clock: Clock,
        emitter: EventEmitter,
        quota: QuotaGuard,
        *,
        ttft_limit_s: float,
        answer_limit_s: float | None = None,
        scrubber: Scrubber | None = None,
        tracer: RecordingTracer | None = None,
        metrics: ProxyMetrics | None = None,
        exchanges: ExchangeRing | None = None,
    ) -> None:
        self._http = http
        self._exchanges = exchanges  # None: no exchange is kept for evidence
        self._metrics = metrics
        self._adapters = adapters
        self._health = health
        self._latency = latency
        self._clock = clock
        self._emitter = emitter
        self._quota = quota
        self._ttft_limit_s = ttft_limit_s
        self._answer_limit_s = answer_limit_s  # None: no cap on a non-streamed attempt's derived limit
        self._scrubber = scrubber if scrubber is not None else Scrubber()
        self._settling = KeptTasks(logger, "settling a reservation failed")
        self._closed = False
        self._tracer = tracer  # None: tracing is off

    async def close(self) -> None:
        """The resources are closing: a stream that ends from now on has nothing to settle or emit
        with; the settlements under way are waited for (at most ``SETTLE_DRAIN_S``)."""
        self._closed = True
        await self._settling.wait(SETTLE_DRAIN_S)

    async def run(self, routed: RoutedRequest, route: Route, decision_id: str, deadline: float) -> Attempts:
        """Try ``route.arms`` in order: the first answer, else the last failure, and what was tried.

        ``ApiError`` when no attempt could even start. What is raised once one has started comes
        back as ``Interrupted``, so the attempts made are logged before it is raised again.
        """
        record = _Record()
        try:
            result = await self._try_arms(routed, route, decision_id, deadline, record)
        except BaseException as exc:
            if not record.usages:
                raise  # nothing was attempted: nothing to log
            return record.attempts(Interrupted(exc))
        return record.attempts(result)

    async def _try_arms(
        self, routed: RoutedRequest, route: Route, decision_id: str, deadline: float, record: _Record
    ) -> Answer | UpstreamStream | UpstreamFailure:
        last: UpstreamFailure | None = None
        skipped = _Skipped()
        pending = list(route.arms)
        while pending:
            arm = _next_arm(pending, self._health, record.tried[-1].status if record.tried else None)
            if monotonic() >= deadline:
                break
            call = await self._prepare(arm, routed, decision_id, record, skipped)
            if call is None:
                if skipped.app_over_rate:
                    break
                continue
            result = await self._attempt(call, routed, deadline, record)
            if not isinstance(result, UpstreamFailure):
                record.served = arm
                return result
            record.tried.append(Tried(arm, result.status, result.http_status))
            last = result
            if result.http_status in CLIENT_ERRORS:
                return result
        if monotonic() >= deadline:
            return self._deadline_failure()
        if last is None:
            raise self._nothing_attempted(routed, route, skipped)
        return last

    async def _prepare(
        self, arm: Arm, routed: RoutedRequest, decision_id: str, record: _Record, skipped: _Skipped
    ) -> _Call | None:
        """The attempt on ``arm``, admitted by health, its adapter and the quota gate; else None,
        and ``skipped`` says why."""
        health = self._health
        adapter = self._adapters.get(arm.provider)
        if adapter is None:
            return None  # the catalog dropped its provider since the candidates were chosen
        if not health.begin(arm.provider, arm.name, monotonic()):
            return None  # it was ejected or cooled since the candidates were chosen
        try:
            request = adapter.request(routed.body, arm.model, stream=routed.stream)
        except UnsupportedFeature as exc:  # the adapter's last guard behind the capability filter
            health.release(arm.provider)
            skipped.unsupported = skipped.unsupported or exc
            return None
        except Exception:  # a body this adapter cannot map: try the next arm rather than fail
            logger.exception("%s could not map the request", arm.name)
            health.release(arm.provider)
            skipped.untranslatable = True
            return None
        grant = await self._admit(arm, routed, first_attempt=not record.usages)
        if not isinstance(grant, Grant):
            health.release(arm.provider)
            skipped.refusals.append(grant)
            return None
        record.granted = grant
        attempt = Attempt(
            decision_id=decision_id,
            app=routed.app,
            provider=arm.provider,
            model=arm.model,
            price=arm.price,
            clock=self._clock,
            number=len(record.tried) + 1,
            fallback_from=record.tried[-1].arm.name if record.tried else "",
        )
        tracer = self._tracer
        span = (
            None if tracer is None else tracing.start_attempt(tracer, arm.provider, arm.model, attempt.number)
        )
        return _Call(arm, adapter, request, attempt, grant, span, self._metrics)

    async def _admit(self, arm: Arm, routed: RoutedRequest, *, first_attempt: bool) -> Grant | QuotaRefusal:
        """The quota gate's answer for ``arm``; with tracing on, in its own span."""
        if self._tracer is None:
            return await self._quota.admit(arm, routed, first_attempt=first_attempt)
        started = tracing.now_ns()
        try:
            grant = await self._quota.admit(arm, routed, first_attempt=first_attempt)
        except BaseException as exc:
            tracing.record_quota(self._tracer, started, arm.provider, arm.model, exc, {})
            raise
        if isinstance(grant, Grant):
            tracing.record_quota(self._tracer, started, arm.provider, arm.model, "granted", grant.remaining)
        else:
            tracing.record_quota(self._tracer, started, arm.provider, arm.model, type(grant).__name__, {})
        return grant

    async def _settle(self, grant: Grant, usage: Usage | None) -> None:
        await self._quota.settle(grant, *_counted(usage))

    def _settle_later(self, grant: Grant, usage: Usage | None) -> None:
        """Settle from synchronous code (a stream's end): at once from a lease, else a task, kept until
        it is done."""
        tokens, cost_micros = _counted(usage)
        if self._quota.settle_leased(grant, tokens, cost_micros):
            return
        self._settling.start(self._quota.settle(grant, tokens, cost_micros))

    async def _attempt(
        self, call: _Call, routed: RoutedRequest, deadline: float, record: _Record
    ) -> Answer | UpstreamStream | UpstreamFailure:
        """One attempt, its usage event recorded and health told (a stream's only at its end)."""
        attempt, arm, health = call.attempt, call.arm, self._health
        try:
            result = await self._call(call, routed, deadline)
        except BaseException:
            usage = attempt.finish("cancelled")  # the client went away: not the provider's fault
            record.add(usage)
            call.end_span(usage, stream=routed.stream)
            health.release(arm.provider)
            self._settle_later(call.grant, usage)
            raise
        if isinstance(result, UpstreamFailure):
            usage = attempt.finish(result.status)
            record.add(usage)
            call.end_span(usage, stream=routed.stream)
            await self._settle(call.grant, usage)
            health.record(
                arm.provider,
                arm.name,
                failure_outcome(result),
                monotonic(),
                retry_after_s=result.retry_after_s,
                exhausted=result.model_limit_used_up,
            )
            logger.debug("attempt %d on %s failed: %s", attempt.number, arm.name, result.status)
            return result
        if isinstance(result, Answer):  # a stream is judged at its end
            health.record(arm.provider, arm.name, "ok", monotonic())
            usage = attempt.finish("ok", result.input_tokens, result.output_tokens)
            record.add(usage)
            call.end_span(usage, stream=False)
            # Settled once the answer is on its way: the client does not wait for the correction's
            # round trip. Its command is written before any later request's reservation can be
            # (it is the next callback on the loop), and close() waits for it.
            self._settle_later(call.grant, usage)
            if usage is not None:
                self._observe(call.arm, usage, stream=False)
        return result

    async def _call(
        self, call: _Call, routed: RoutedRequest, deadline: float
    ) -> Answer | UpstreamStream | UpstreamFailure:
        arm, adapter, attempt = call.arm, call.adapter, call.attempt
        limit_s = min(self._limit_s(arm, routed), deadline - monotonic())
        response: UpstreamResponse | None = None
        self._health.wait(arm.provider, id(attempt), monotonic(), limit_s)
        try:
            async with asyncio.timeout(limit_s):
                response = await send(self._http, call.request)
                attempt.rate_limit = adapter.rate_limits(response.headers)
                if not response.is_success:
                    body = await response.aread()
                    self._keep(call, response.status_code, response.headers, body, failed=True)
                    return client_safe(
                        arm, adapter.failure(response.status_code, response.headers, body), self._scrubber
                    )
                if routed.stream:
                    chunks = response.aiter_raw()
                    first = await anext(chunks, b"")
                    attempt.first_byte()
                    if not first:
                        return local_failure(
                            "error", 502, f"`{arm.name}` sent an empty stream.", "upstream_error"
                        )
                    self._keep(call, response.status_code, response.headers, b"", failed=False)
                    translator = adapter.stream(arm.model, include_usage=routed.include_usage)
                    finish = partial(self._finish_stream, call, translator)
                    stream = UpstreamStream(arm, translator, response, chunks, first, finish)
                    response = None  # handed over: the relay closes it
                    return stream
                attempt.first_byte()
                content = await response.aread()
                self._keep(call, response.status_code, response.headers, content, failed=False)
        except TimeoutError:
            self._keep(call, 0, {}, b"", failed=True)
            why = "the request deadline" if monotonic() >= deadline else "the first-token limit"
            return local_failure(
                "timeout", 504, f"`{arm.name}` did not answer within {why}.", "upstream_timeout"
            )
        except TRANSPORT_ERRORS as exc:
            self._keep(call, 0, {}, b"", failed=True)
            if is_timeout(exc):
                return local_failure("timeout", 504, f"`{arm.name}` timed out.", "upstream_timeout")
            logger.warning("upstream %s unreachable: %r", arm.name, exc)
            return local_failure("error", 502, f"`{arm.name}` could not be reached.", "upstream_error")
        finally:
            self._health.answered(arm.provider, id(attempt))
            if response is not None:
                await response.aclose()
        try:
            return adapter.response(content)
        except Exception:  # a 2xx body the adapter cannot read is the provider's failure
            logger.exception("answer from %s could not be read", arm.name)
            return local_failure(
                "error", 502, f"`{arm.name}` sent an answer the proxy cannot read.", "upstream_error"
            )

    def _keep(
        self, call: _Call, status: int, headers: Mapping[str, str], body: bytes, *, failed: bool
    ) -> None:
        """The exchange into the evidence ring when it may become evidence (status 0: no answer)."""
        ring = self._exchanges
        if ring is None or not ring.wanted(failed, monotonic() - call.attempt.started):
            return
        attempt = call.attempt
        now = self._clock.now_ms()
        ring.keep(attempt.decision_id, attempt.number, now, call.request, status, headers, body)

    def _limit_s(self, arm: Arm, routed: RoutedRequest) -> float:
        if routed.stream:
            return self._ttft_limit_s
        answer_ms = self._latency.ms_per_token(arm.name) * routed.estimate.output_tokens
        derived = self._ttft_limit_s + answer_ms / 1000.0
        return derived if self._answer_limit_s is None else min(derived, self._answer_limit_s)

    def _finish_stream(self, call: _Call, translator: StreamTranslator, status: AttemptStatus) -> None:
        """End a served stream's attempt: its usage event, settlement, health outcome and latency figures."""
        if self._closed:
            if call.span is not None:
                call.span.end()  # unexported, most likely: tracing closes with the resources
            return
        usage = call.attempt.finish(status, translator.input_tokens, translator.output_tokens)
        if usage is None:
            return  # finished already
        call.end_span(usage, stream=True)
        self._settle_later(call.grant, usage)
        arm = call.arm
        if status in ("error", "timeout"):
            self._health.record(arm.provider, arm.name, "failure", monotonic())
        elif status == "ok":
            self._health.record(arm.provider, arm.name, "ok", monotonic())
            self._observe(arm, usage, stream=True)
        else:
            self._health.release(arm.provider)
        self._emitter.emit(usage)  # after the decision: the gateway logged it when the stream was served

    def _observe(self, arm: Arm, usage: Usage, *, stream: bool) -> None:
        self._latency.observe(
            arm.name,
            ttfb_ms=usage.ttfb_ms,
            latency_ms=usage.latency_ms,
            output_tokens=usage.output_tokens,
            stream=stream,
        )

    @staticmethod
    def _deadline_failure() -> UpstreamFailure:
        return local_failure(
            "timeout",
            504,
            "No provider answered within the request's deadline (REQUEST_DEADLINE_MS or latency_budget_ms).",
            "deadline_exceeded",
        )

    def _nothing_attempted(self, routed: RoutedRequest, route: Route, skipped: _Skipped) -> errors.ApiError:
        unsupported = skipped.unsupported
        if unsupported is not None:
            return errors.ApiError(400, str(unsupported), param=unsupported.param, code="unsupported_feature")
        if skipped.refusals:
            return refused_error(routed.app, skipped.refusals)
        if skipped.untranslatable:
            return errors.ApiError(
                400, "No candidate provider can take this request as it is.", code="untranslatable_request"
            )
        now = monotonic()
        wait = min(self._health.retry_in(arm.provider, arm.name, now) for arm in route.arms)
        return errors.ApiError(
            503,
            "Every candidate provider is failing or cooling down; retry shortly.",
            type_="api_error",
            code="providers_unavailable",
            headers=retry_after_header(wait),
        )


def _next_arm(pending: list[Arm], health: Health, after: AttemptStatus | None) -> Arm:
    """Take the next arm to try, ``after`` the last attempt's status (``None`` for the first).

    The first whose provider is not lagging (``Health.lagging``), nor, for a fallback, already
    probed while unproven (``Health.probed``), and, after a timeout, has answered lately
    (``Health.proven``); failing that, the first not lagging; failing that, the first.
    """
    now = monotonic()

    def ready(provider: str) -> bool:
        return not health.lagging(provider, now) and (after is None or not health.probed(provider, now))

    for proven_only in (True, False) if after == "timeout" else (False,):
        for index, arm in enumerate(pending):
            if ready(arm.provider) and (not proven_only or health.proven(arm.provider, now)):
                return pending.pop(index)
    for index, arm in enumerate(pending):
        if not health.lagging(arm.provider, now):
            return pending.pop(index)
    return pending.pop(0)


def failure_outcome(failure: UpstreamFailure) -> Outcome:
    if failure.http_status in CLIENT_ERRORS:
        return "neutral"  # the request was bad, not the provider
    if failure.status == "429":
        return "throttled"
    return "timeout" if failure.status == "timeout" else "failure"


def _counted(usage: Usage | None) -> tuple[int, int]:
    """What an attempt counts against quotas: its tokens (input and output) and its cost in micro-USD."""
    if usage is None:
        return 0, 0
    return usage.input_tokens + usage.output_tokens, round(usage.cost_usd * USD_MICROS)
