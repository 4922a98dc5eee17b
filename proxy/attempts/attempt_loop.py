"""The attempt loop: call the route's arms in order until one answers.

An attempt falls back to the next arm on a 429, a 5xx or any other provider-side
error, a connection error, and a first byte later than the time-to-first-token limit;
each outcome is told to ``proxy.routing.health`` (a 429 with the ``retry-after`` it sent and
whether its rate-limit headers show a limit used up), which decides what is ejected,
cooled or given less traffic. For a stream the
first upstream chunk is awaited before anything reaches the client, so a slow
provider is abandoned while the next can still serve. For a non-streamed answer the
first byte is the whole answer, so its limit is the first-token limit plus the
time the arm takes per token (``LatencyEstimates``) for the answer's size bound.
The request deadline bounds the whole loop; a 4xx that says the request itself is
bad (400, 413, 422) goes back to the client at once.

Each attempt ends in one ``Usage`` event (attempt number, status, ``fallback_from``
= the arm tried before it). The loop returns them instead of emitting them, so the
gateway can emit the decision, which records the fallbacks, first.

Each attempt first reserves the caller's app budgets and limits and the provider's
caps (``proxy.attempts.quota_gate``): the estimated tokens and the estimated cost at the
arm's price, settled afterwards from the actual usage and cost. An arm over the
app's spend budget is skipped (a cheaper one may fit); over the app's request or
token rate, no arm can serve, and the request is refused at once. When nothing
could be attempted, an app's refusal is a 429 ``budget_exhausted`` or
``app_rate_limited`` naming the window; otherwise, the providers' ``quota_exhausted``.

A provider's error body reaches the client only scrubbed (``proxy.edge.scrub``), and a
provider that refuses Symphony's own key (401, 403) is the operator's problem, not
the caller's: it is a 502 ``upstream_auth_error`` that says nothing of the key.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace

import httpx

from proxy import errors
from proxy.adapters.base import (
    Adapter,
    Answer,
    StreamTranslator,
    UnsupportedFeature,
    UpstreamFailure,
    UpstreamRequest,
)
from proxy.attempts.attempt import Attempt
from proxy.attempts.quota_gate import AppScope, Grant, QuotaGuard, Unavailable
from proxy.attempts.upstream import TRANSPORT_ERRORS, is_timeout, send
from proxy.edge.scrub import Scrubber
from proxy.errors import retry_after_header
from proxy.routed_request import RoutedRequest
from proxy.routing.candidates import Arm, estimated_cost_usd, output_tokens, prompt_tokens
from proxy.routing.health import Health, Outcome
from proxy.routing.latency import LatencyEstimates
from proxy.routing.router import Route
from symphony.app_keys import USD_MICROS
from symphony.clock import Clock, monotonic
from symphony.events import AttemptStatus, Usage
from symphony.quotas import Refusal

logger = logging.getLogger(__name__)

# Provider answers that say the request itself is wrong: another provider would refuse it too.
CLIENT_ERRORS = frozenset({400, 413, 422})
# Provider answers that refuse Symphony's credentials for that provider.
UPSTREAM_AUTH_ERRORS = frozenset({401, 403})


@dataclass(frozen=True, slots=True)
class Tried:
    """An attempt that failed, as the decision and the native API report it."""

    arm: Arm
    status: AttemptStatus
    http_status: int


@dataclass(slots=True)
class UpstreamStream:
    """A stream whose first chunk has arrived; nothing has reached the client yet."""

    arm: Arm
    attempt: Attempt
    translator: StreamTranslator
    response: httpx.Response
    chunks: AsyncIterator[bytes]
    first: bytes
    grant: Grant | None = None


@dataclass(frozen=True, slots=True)
class _Call:
    """One attempt in the making: the arm, how to reach it, what to send, how it is timed."""

    arm: Arm
    adapter: Adapter
    request: UpstreamRequest
    attempt: Attempt
    grant: Grant | None


@dataclass(slots=True)
class AttemptLog:
    """What the loop did, kept by the caller so that it survives a cancelled request."""

    tried: list[Tried] = field(default_factory=list)  # failed attempts, in order
    usages: list[Usage] = field(default_factory=list)  # finished attempts' events, to emit after the decision
    served: Arm | None = None  # the arm that answered

    @property
    def attempts(self) -> int:
        return len(self.tried) + (self.served is not None)


def _local_failure(status: AttemptStatus, http_status: int, message: str, code: str) -> UpstreamFailure:
    return UpstreamFailure(status, http_status, None, errors.error_body(message, "api_error", None, code))


class AttemptLoop:
    def __init__(
        self,
        http: httpx.AsyncClient,
        adapters: Mapping[str, Adapter],
        health: Health,
        latency: LatencyEstimates,
        clock: Clock,
        *,
        ttft_limit_s: float,
        quota: QuotaGuard | None = None,
        scrubber: Scrubber | None = None,
    ) -> None:
        self._http = http
        self._adapters = adapters
        self._health = health
        self._latency = latency
        self._clock = clock
        self._ttft_limit_s = ttft_limit_s
        self._quota = quota
        self._scrubber = scrubber if scrubber is not None else Scrubber()
        self._settling: set[asyncio.Task[None]] = set()

    async def run(
        self, routed: RoutedRequest, route: Route, decision_id: str, deadline: float, log: AttemptLog
    ) -> Answer | UpstreamStream | UpstreamFailure:
        """Try ``route.arms`` in order: the first answer, else the last failure.

        ``ApiError`` when no attempt could even start.
        """
        last: UpstreamFailure | None = None
        refused: UnsupportedFeature | None = None
        untranslatable = False
        over_quota: list[Refusal | Unavailable] = []
        over_app: list[Refusal] = []  # the caller's app's own budgets and limits
        health = self._health
        pending = list(route.arms)
        while pending:
            arm = _next_arm(pending, health, log.tried[-1].status if log.tried else None)
            if monotonic() >= deadline:
                break
            if not health.begin(arm.provider, arm.name, monotonic()):
                continue  # it was ejected or cooled since the candidates were chosen
            adapter = self._adapters[arm.provider]
            try:
                request = adapter.request(routed.body, arm.model, stream=routed.stream)
            except UnsupportedFeature as exc:  # the adapter's last guard behind the capability filter
                health.release(arm.provider)
                refused = refused or exc
                continue
            except Exception:  # a body this adapter cannot map: try the next arm rather than fail
                logger.exception("%s could not map the request", arm.name)
                health.release(arm.provider)
                untranslatable = True
                continue
            grant = await self._reserve(arm, routed, app_request=not log.usages)
            own_key = routed.key
            if isinstance(grant, Refusal) and own_key is not None and grant.limit.provider == own_key.scope:
                health.release(arm.provider)
                over_app.append(grant)
                if grant.limit.metric == "usd_micros":
                    continue  # a cheaper arm may still fit the budget
                break  # a request or token rate: every arm counts the same
            if isinstance(grant, Refusal | Unavailable):  # over a cap: this arm is no candidate now
                health.release(arm.provider)
                over_quota.append(grant)
                continue
            attempt = Attempt(
                decision_id=decision_id,
                app=routed.app,
                provider=arm.provider,
                model=arm.model,
                price=arm.price,
                clock=self._clock,
                number=len(log.tried) + 1,
                fallback_from=log.tried[-1].arm.name if log.tried else "",
            )
            call = _Call(arm, adapter, request, attempt, grant)
            result = await self._attempt(call, routed, deadline, log.usages)
            if not isinstance(result, UpstreamFailure):
                log.served = arm
                return result
            log.tried.append(Tried(arm, result.status, result.http_status))
            last = result
            if result.http_status in CLIENT_ERRORS:
                return result
        if monotonic() >= deadline:
            return self._deadline_failure()
        if last is None:
            if over_app and refused is None:
                raise app_limited(routed.app, over_app)
            if over_quota and refused is None:
                raise quota_exhausted(over_quota)
            raise self._nothing_attempted(route, refused, untranslatable=untranslatable)
        return last

    async def _reserve(
        self, arm: Arm, routed: RoutedRequest, *, app_request: bool
    ) -> Grant | Refusal | Unavailable | None:
        """The attempt's reservation; ``app_request`` False once an attempt counted the app's request."""
        if self._quota is None:
            return None
        estimate = prompt_tokens(routed.body) + output_tokens(routed.body)
        cost_micros = math.ceil(estimated_cost_usd(arm, routed.body) * USD_MICROS)
        app = AppScope(routed.key.scope, routed.key.limits()) if routed.key is not None else None
        return await self._quota.reserve(
            arm.provider, arm.model, estimate, cost_micros=cost_micros, app=app, app_request=app_request
        )

    async def _settle(self, grant: Grant | None, usage: Usage | None) -> None:
        if self._quota is not None and grant is not None:
            tokens = usage.input_tokens + usage.output_tokens if usage is not None else 0
            cost_micros = round(usage.cost_usd * USD_MICROS) if usage is not None else 0
            await self._quota.settle(grant, tokens, cost_micros)

    def _settle_later(self, grant: Grant | None, usage: Usage | None) -> None:
        """Settle from synchronous code (a stream's end): a task, kept until it is done."""
        if self._quota is None or grant is None:
            return
        task = asyncio.get_running_loop().create_task(self._settle(grant, usage))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _attempt(
        self, call: _Call, routed: RoutedRequest, deadline: float, usages: list[Usage]
    ) -> Answer | UpstreamStream | UpstreamFailure:
        """One attempt, its usage event queued and health told (a stream's only at its end)."""
        attempt, arm, health = call.attempt, call.arm, self._health
        try:
            result = await self._call(call, routed, deadline)
        except BaseException:
            usage = attempt.finish("cancelled")  # the client went away: not the provider's fault
            _queue(usages, usage)
            health.release(arm.provider)
            self._settle_later(call.grant, usage)
            raise
        if isinstance(result, UpstreamFailure):
            usage = attempt.finish(result.status)
            _queue(usages, usage)
            await self._settle(call.grant, usage)
            health.record(
                arm.provider,
                arm.name,
                _outcome(result),
                monotonic(),
                retry_after_s=result.retry_after_s,
                exhausted=result.model_limit_used_up,
            )
            logger.debug("attempt %d on %s failed: %s", attempt.number, arm.name, result.status)
            return result
        if isinstance(result, Answer):  # a stream is judged at its end
            health.record(arm.provider, arm.name, "ok", monotonic())
        if isinstance(result, Answer):
            usage = attempt.finish("ok", result.input_tokens, result.output_tokens)
            _queue(usages, usage)
            await self._settle(call.grant, usage)
            if usage is not None:
                self._observe(call.arm, usage, stream=False)
        return result

    async def _call(
        self, call: _Call, routed: RoutedRequest, deadline: float
    ) -> Answer | UpstreamStream | UpstreamFailure:
        arm, adapter, attempt = call.arm, call.adapter, call.attempt
        limit_s = min(self._limit_s(arm, routed), deadline - monotonic())
        response: httpx.Response | None = None
        self._health.wait(arm.provider, id(attempt), monotonic(), limit_s)
        try:
            async with asyncio.timeout(limit_s):
                response = await send(self._http, call.request)
                attempt.rate_limit = adapter.rate_limits(response.headers)
                if not response.is_success:
                    body = await response.aread()
                    return self._failure(arm, adapter.failure(response.status_code, response.headers, body))
                if routed.stream:
                    chunks = response.aiter_raw()
                    first = await anext(chunks, b"")
                    attempt.first_byte()
                    if not first:
                        return _local_failure(
                            "error", 502, f"`{arm.name}` sent an empty stream.", "upstream_error"
                        )
                    translator = adapter.stream(arm.model, include_usage=routed.include_usage)
                    stream = UpstreamStream(arm, attempt, translator, response, chunks, first, call.grant)
                    response = None  # handed over: the relay closes it
                    return stream
                attempt.first_byte()
                content = await response.aread()
        except TimeoutError:
            why = "the request deadline" if monotonic() >= deadline else "the first-token limit"
            return _local_failure(
                "timeout", 504, f"`{arm.name}` did not answer within {why}.", "upstream_timeout"
            )
        except TRANSPORT_ERRORS as exc:
            if is_timeout(exc):
                return _local_failure("timeout", 504, f"`{arm.name}` timed out.", "upstream_timeout")
            logger.warning("upstream %s unreachable: %r", arm.name, exc)
            return _local_failure("error", 502, f"`{arm.name}` could not be reached.", "upstream_error")
        finally:
            self._health.answered(arm.provider, id(attempt))
            if response is not None:
                await response.aclose()
        try:
            return adapter.response(content)
        except Exception:  # a 2xx body the adapter cannot read is the provider's failure
            logger.exception("answer from %s could not be read", arm.name)
            return _local_failure(
                "error", 502, f"`{arm.name}` sent an answer the proxy cannot read.", "upstream_error"
            )

    def _failure(self, arm: Arm, failure: UpstreamFailure) -> UpstreamFailure:
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
        body = self._scrubber.bytes(failure.body)
        if body is failure.body:
            return failure
        return replace(failure, body=body)

    def _limit_s(self, arm: Arm, routed: RoutedRequest) -> float:
        if routed.stream:
            return self._ttft_limit_s
        return self._ttft_limit_s + self._latency.ms_per_token(arm.name) * output_tokens(routed.body) / 1000.0

    def finish_stream(self, stream: UpstreamStream, status: AttemptStatus) -> Usage | None:
        """End a served stream's attempt: its usage event, its health outcome and latency figures."""
        translator = stream.translator
        usage = stream.attempt.finish(status, translator.input_tokens, translator.output_tokens)
        self._settle_later(stream.grant, usage)
        arm = stream.arm
        if status in ("error", "timeout"):
            self._health.record(arm.provider, arm.name, "failure", monotonic())
        elif status == "ok":
            self._health.record(arm.provider, arm.name, "ok", monotonic())
        else:
            self._health.release(arm.provider)
        if usage is not None and status == "ok":
            self._observe(stream.arm, usage, stream=True)
        return usage

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
        return _local_failure(
            "timeout", 504, "No provider answered within the request deadline.", "deadline_exceeded"
        )

    def _nothing_attempted(
        self, route: Route, refused: UnsupportedFeature | None, *, untranslatable: bool
    ) -> errors.ApiError:
        if refused is not None:
            return errors.ApiError(400, str(refused), param=refused.param, code="unsupported_feature")
        if untranslatable:
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


def quota_exhausted(refusals: list[Refusal | Unavailable]) -> errors.ApiError:
    """Every candidate is over a cap: 429, retry after the earliest moment one has room again."""
    waits = [r.retry_after_ms for r in refusals if r.retry_after_ms is not None]
    wait_s = min(waits) / 1000 if waits else None
    reasons = "; ".join(dict.fromkeys(r.message for r in refusals))
    when = f" Retry after {math.ceil(wait_s)} s." if wait_s is not None else ""
    return errors.ApiError(
        429,
        f"Every candidate is over its quota ({reasons}).{when}",
        type_="rate_limit_exceeded",
        code="quota_exhausted",
        headers=retry_after_header(wait_s),
    )


def app_limited(app: str, refusals: list[Refusal]) -> errors.ApiError:
    """The caller's app is over its own budget or rate: 429, retry when the window has room again."""
    waits = [r.retry_after_ms for r in refusals if r.retry_after_ms is not None]
    wait_s = min(waits) / 1000 if waits else None
    limit, cap, used = refusals[0].limit, refusals[0].cap, refusals[0].used
    when = f" Retry after {math.ceil(wait_s)} s." if wait_s is not None else ""
    if limit.metric == "usd_micros":
        window = {"1d": "UTC day", "month": "calendar month (UTC)"}.get(limit.window.name, limit.window.name)
        message = (
            f"App `{app}` has spent its budget for this {window}: "
            f"${used / USD_MICROS:.4f} of ${cap / USD_MICROS:.4f}, with requests in flight counted "
            f"at their estimate.{when}"
        )
        code = "budget_exhausted"
    else:
        message = f"App `{app}` is over its limit of {cap} {limit.metric} per {limit.window.name}.{when}"
        code = "app_rate_limited"
    return errors.ApiError(
        429, message, type_="rate_limit_exceeded", code=code, headers=retry_after_header(wait_s)
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


def _outcome(failure: UpstreamFailure) -> Outcome:
    if failure.http_status in CLIENT_ERRORS:
        return "neutral"  # the request was bad, not the provider
    if failure.status == "429":
        return "throttled"
    return "timeout" if failure.status == "timeout" else "failure"


def _queue(usages: list[Usage], usage: Usage | None) -> None:
    if usage is not None:
        usages.append(usage)
