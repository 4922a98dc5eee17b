"""The attempts of one embeddings request: the arms serving its model, in order, until one answers.

Embeddings are routed on their own: vectors of different models cannot be compared, so the
caller names the model and only the providers serving that model are candidates (its own
provider first when named as ``provider/model``, else the catalog's order, healthy ones first).
Each attempt is told to ``proxy.routing.health`` and admitted by the quota gate like a chat
attempt (the app's budgets and rates, the provider's caps), at the model's input price for the
estimated tokens, and settled from the provider's ``usage``. A 429, a 5xx, a connection error
or no answer within ``TTFT_LIMIT_MS`` falls back to the next; a 400, 413 or 422 goes back at
once. A provider's 401/403 is the operator's problem: a 502 that does not name the key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy import errors
from proxy.adapters.base import UpstreamFailure
from proxy.adapters.openai_compat import OpenAICompatAdapter
from proxy.attempts.attempt import Attempt
from proxy.attempts.attempt_loop import CLIENT_ERRORS, Tried, client_safe, failure_outcome, local_failure
from proxy.attempts.quota_gate import Grant, QuotaGuard, QuotaRefusal, refused_error
from proxy.attempts.upstream import TRANSPORT_ERRORS, HttpClient, send
from proxy.edge.scrub import Scrubber
from proxy.routing.candidates import Arm, TokenEstimate
from proxy.routing.health import Health
from symphony.app_keys import USD_MICROS, AppKey
from symphony.clock import Clock, monotonic
from symphony.events import Usage

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EmbeddingJob:
    body: dict[str, Any]  # the caller's body; each attempt sets its arm's model
    app: str
    key: AppKey | None
    arms: tuple[Arm, ...]  # the candidates, in order
    estimate: TokenEstimate  # input tokens; no output
    task: str
    inputs: int  # how many texts or token arrays


@dataclass(slots=True)
class Embedded:
    """What the loop did: the answer's bytes or the last failure, the failed attempts, the events."""

    result: bytes | UpstreamFailure | None = None
    tried: list[Tried] = field(default_factory=list)
    usages: list[Usage] = field(default_factory=list)
    served: Arm | None = None
    remaining: dict[str, float] = field(default_factory=dict)


class EmbeddingLoop:
    def __init__(
        self,
        http: HttpClient,
        adapters: Mapping[str, object],
        health: Health,
        clock: Clock,
        quota: QuotaGuard,
        *,
        limit_s: float,
        scrubber: Scrubber,
    ) -> None:
        self._http = http
        self._adapters = adapters
        self._health = health
        self._clock = clock
        self._quota = quota
        self._limit_s = limit_s
        self._scrubber = scrubber

    async def run(self, job: EmbeddingJob, decision_id: str, deadline: float) -> Embedded:
        done = Embedded()
        refusals: list[QuotaRefusal] = []
        now = monotonic()
        arms = sorted(job.arms, key=lambda arm: not self._health.available(arm.provider, arm.name, now))
        for arm in arms:
            if monotonic() >= deadline:
                break
            adapter = self._adapters.get(arm.provider)
            if not isinstance(adapter, OpenAICompatAdapter) or not self._health.begin(
                arm.provider, arm.name, monotonic()
            ):
                continue
            grant = await self._quota.admit_estimate(
                arm, job.estimate, job.key, first_attempt=not done.usages
            )
            if not isinstance(grant, Grant):
                self._health.release(arm.provider)
                refusals.append(grant)
                continue
            done.remaining = grant.remaining
            result = await self._attempt(arm, adapter, grant, job, decision_id, deadline, done)
            if not isinstance(result, UpstreamFailure):
                done.served, done.result = arm, result
                return done
            done.tried.append(Tried(arm, result.status, result.http_status))
            done.result = result
            if result.http_status in CLIENT_ERRORS:
                return done
        if done.result is None:
            if refusals:
                raise refused_error(job.app, refusals)
            raise errors.ApiError(
                503,
                "Every provider of this embedding model is failing or cooling down; retry shortly.",
                type_="api_error",
                code="providers_unavailable",
                headers=errors.retry_after_header(1.0),
            )
        return done

    async def _attempt(
        self,
        arm: Arm,
        adapter: OpenAICompatAdapter,
        grant: Grant,
        job: EmbeddingJob,
        decision_id: str,
        deadline: float,
        done: Embedded,
    ) -> bytes | UpstreamFailure:
        attempt = Attempt(
            decision_id=decision_id,
            app=job.app,
            provider=arm.provider,
            model=arm.model,
            price=arm.price,
            clock=self._clock,
            number=len(done.tried) + 1,
            fallback_from=done.tried[-1].arm.name if done.tried else "",
        )
        result = await self._call(arm, adapter, job, attempt, deadline)
        if isinstance(result, UpstreamFailure):
            usage = attempt.finish(result.status)
            self._health.record(
                arm.provider,
                arm.name,
                failure_outcome(result),
                monotonic(),
                retry_after_s=result.retry_after_s,
            )
            tokens = 0
        else:
            tokens = _prompt_tokens(result)
            usage = attempt.finish("ok", tokens, 0)
            self._health.record(arm.provider, arm.name, "ok", monotonic())
        if usage is not None:
            done.usages.append(usage)
        await self._quota.settle(
            grant, tokens, round(usage.cost_usd * USD_MICROS) if usage is not None else 0
        )
        return result

    async def _call(
        self, arm: Arm, adapter: OpenAICompatAdapter, job: EmbeddingJob, attempt: Attempt, deadline: float
    ) -> bytes | UpstreamFailure:
        request = adapter.embeddings_request(job.body, arm.model)
        try:
            async with asyncio.timeout(min(self._limit_s, deadline - monotonic())):
                response = await send(self._http, request)
                try:
                    attempt.rate_limit = adapter.rate_limits(response.headers)
                    body = await response.aread()
                finally:
                    await response.aclose()
        except TimeoutError:
            return local_failure("timeout", 504, f"`{arm.name}` did not answer in time.", "upstream_timeout")
        except TRANSPORT_ERRORS as exc:
            logger.warning("upstream %s unreachable: %r", arm.name, exc)
            return local_failure("error", 502, f"`{arm.name}` could not be reached.", "upstream_error")
        attempt.first_byte()
        if response.is_success:
            return body
        return client_safe(arm, adapter.failure(response.status_code, response.headers, body), self._scrubber)


def _prompt_tokens(body: bytes) -> int:
    try:
        usage = orjson.loads(body).get("usage") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return 0
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) else 0
