"""The gateway core, the same for every inbound API: candidates, route, attempts, answer.

``Gateway`` is built without I/O; ``start()`` (app lifespan) reads the shared
clock and opens the pooled upstream client, the Redis client, the event emitter
and the challenger feed; ``stop()`` flushes every queued event and closes them.

``execute(routed, inbound)`` routes one canonical request (``RoutedRequest``) and answers in the
inbound API's format (``Inbound``). It logs one ``Decision`` event per routed
request, emitted once the attempt loop is over so it can record the fallbacks,
followed by one ``Usage`` event per attempt (a served stream's when it ends).
Requests refused before any attempt (bad input, no candidate) emit nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import redis
import redis.asyncio as aioredis
from starlette.responses import Response

from proxy import errors
from proxy.adapters.base import Adapter, Answer, UpstreamFailure
from proxy.attempts.attempt_loop import AttemptLog, AttemptLoop, UpstreamStream
from proxy.attempts.quota_gate import QuotaGuard
from proxy.attempts.stream_relay import RelayResponse, Render
from proxy.attempts.upstream import new_http_client
from proxy.decision_ids import DecisionIds
from proxy.edge.scrub import Scrubber
from proxy.emitter import EventEmitter
from proxy.routed_request import RoutedRequest
from proxy.routing.candidates import Candidates, prompt_tokens
from proxy.routing.challenger import ChallengerFeed
from proxy.routing.health import Rules
from proxy.routing.latency import LatencyEstimates
from proxy.routing.router import Route, Router
from symphony.catalog import Catalog, resolve_policy_path
from symphony.clock import Clock, RealClock, monotonic, shared_clock
from symphony.events import AttemptStatus, Decision, new_id
from symphony.quotas import load_quota_policy
from symphony.serving import ChallengerPolicy, ChampionPolicy
from symphony.settings import Settings

log = logging.getLogger(__name__)

DECISION_HEADER = "x-symphony-decision-id"
ARM_HEADER = "x-symphony-arm"
POLICY_HEADER = "x-symphony-policy"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the client may learn about how its request was served."""

    decision_id: str
    route: Route
    log: AttemptLog

    @property
    def arm(self) -> str:
        """The arm that answered, else the one the policy chose."""
        return (self.log.served or self.route.chosen).name

    @property
    def model(self) -> str:
        return (self.log.served or self.route.chosen).model

    def headers(self) -> dict[str, str]:
        return {DECISION_HEADER: self.decision_id, ARM_HEADER: self.arm, POLICY_HEADER: self.route.policy}

    def summary(self) -> dict[str, Any]:
        """The decision as the native API reports it."""
        served = self.log.served
        return {
            "decision_id": self.decision_id,
            "provider": served.provider if served is not None else None,
            "model": served.model if served is not None else None,
            "chosen": self.route.chosen.name,
            "policy": self.route.policy,
            "policy_version": self.route.policy_version,
            "propensity": self.route.propensity,
            "fallbacks": [
                {"provider": t.arm.provider, "model": t.arm.model, "status": t.status} for t in self.log.tried
            ],
        }


class Inbound(Protocol):
    """How one inbound API renders what the gateway got (canonical OpenAI bytes)."""

    def answer(self, answer: Answer, outcome: Outcome) -> Response: ...

    def stream_renderer(self, outcome: Outcome) -> Render | None: ...

    def failure(self, failure: UpstreamFailure, outcome: Outcome) -> Response: ...


@dataclass
class Runtime:
    clock: Clock
    http: httpx.AsyncClient
    redis: aioredis.Redis
    emitter: EventEmitter
    challenger: ChallengerFeed
    attempts: AttemptLoop
    quota: QuotaGuard


def _read_clock(redis_url: str) -> Clock:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2.0, socket_timeout=2.0)
    try:
        return shared_clock(client)
    except redis.RedisError as exc:
        log.warning("could not read the shared clock from Redis (%s); using real time", exc)
        return RealClock()
    finally:
        client.close()


class Gateway:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        champion: ChampionPolicy,
        adapters: Mapping[str, Adapter],
        *,
        rng: random.Random | None = None,
        scrubber: Scrubber | None = None,
        decision_ids: DecisionIds | None = None,
    ) -> None:
        self.settings = settings
        self.scrubber = scrubber if scrubber is not None else Scrubber()
        self.decision_ids = decision_ids if decision_ids is not None else DecisionIds(os.urandom(32))
        self.catalog = catalog
        self.adapters = dict(adapters)
        self.latency = LatencyEstimates()
        self.candidates = Candidates(catalog, self.adapters, Rules.from_settings(settings), self.latency)
        self.health = self.candidates.health
        self.router = Router(champion, self._challenger, settings.traffic_split, rng)
        self._runtime: Runtime | None = None

    def _challenger(self) -> ChallengerPolicy:
        runtime = self._runtime
        return runtime.challenger.current if runtime is not None else ChallengerPolicy.uniform()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise errors.ApiError(503, "The proxy is not started.", type_="api_error", code="not_ready")
        return self._runtime

    async def start(self) -> None:
        settings = self.settings
        clock = await asyncio.to_thread(_read_clock, settings.redis_url)
        http = new_http_client()
        client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
        emitter = EventEmitter(client, settings.event_shards)
        emitter.start()
        challenger = ChallengerFeed(client)
        await challenger.start()
        quota = QuotaGuard(
            client,
            load_quota_policy(resolve_policy_path(settings.quota_policy_file)),
            clock,
            fail_mode=settings.quota_fail_mode,
            local_share=settings.quota_local_share,
        )
        attempts = AttemptLoop(
            http,
            self.adapters,
            self.health,
            self.latency,
            clock,
            ttft_limit_s=settings.ttft_limit_ms / 1000,
            quota=quota,
            scrubber=self.scrubber,
        )
        self._runtime = Runtime(clock, http, client, emitter, challenger, attempts, quota)

    async def stop(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is None:
            return
        try:
            await runtime.challenger.close()
            await runtime.emitter.close()
        finally:
            await runtime.http.aclose()
            await runtime.redis.aclose()
        log.info(
            "proxy stopped: %d events published, %d dropped",
            runtime.emitter.published,
            runtime.emitter.dropped,
        )

    async def execute(self, routed: RoutedRequest, inbound: Inbound) -> Response:
        runtime = self.runtime
        now = monotonic()
        candidates = self.candidates.select(routed.body, routed.pin, routed.constraints, now, key=routed.key)
        health = self.health
        weights = None if health.quiet(now) else health.weights([arm.provider for arm in candidates], now)
        pinned = routed.pin is not None and routed.pin.model is not None
        route = self.router.route(routed.task, candidates, pinned=pinned, weights=weights)
        ts = runtime.clock.now_ms()
        decision_id = self.decision_ids.issue(ts, routed.app)
        attempt_log = AttemptLog()
        deadline = now + self.settings.request_deadline_ms / 1000
        try:
            result = await runtime.attempts.run(routed, route, decision_id, deadline, attempt_log)
        finally:
            self._log_decision(runtime, routed, route, decision_id, ts, attempt_log)
        outcome = Outcome(decision_id, route, attempt_log)
        if isinstance(result, Answer):
            return inbound.answer(result, outcome)
        if isinstance(result, UpstreamStream):
            return RelayResponse(
                result,
                render=inbound.stream_renderer(outcome),
                finish=self._finish_stream,
                headers=outcome.headers(),
            )
        return inbound.failure(result, outcome)

    def metrics(self) -> dict[str, float]:
        """Counters for ``GET /metrics``: events, and how the quota gate is doing."""
        runtime = self.runtime
        return {
            "symphony_events_published_total": runtime.emitter.published,
            "symphony_events_dropped_total": runtime.emitter.dropped,
            "symphony_events_pending": runtime.emitter.pending,
            "symphony_quota_degraded": float(runtime.quota.degraded),
            "symphony_quota_local_grants_total": runtime.quota.local_grants,
            "symphony_quota_local_tokens_total": runtime.quota.local_tokens,
        }

    def _finish_stream(self, stream: UpstreamStream, status: AttemptStatus) -> None:
        runtime = self._runtime
        usage = runtime.attempts.finish_stream(stream, status) if runtime is not None else None
        if runtime is not None and usage is not None:
            runtime.emitter.emit(usage)

    def _log_decision(
        self,
        runtime: Runtime,
        routed: RoutedRequest,
        route: Route,
        decision_id: str,
        ts: int,
        attempt_log: AttemptLog,
    ) -> None:
        if not attempt_log.usages and attempt_log.served is None:
            return  # nothing was attempted
        messages = routed.body.get("messages")
        features = {
            "messages": float(len(messages) if isinstance(messages, list) else 0),
            "prompt_tokens": float(prompt_tokens(routed.body)),
        }
        chosen = route.chosen
        runtime.emitter.emit(
            Decision(
                event_id=new_id(ts),
                ts=ts,
                decision_id=decision_id,
                request_id=new_id(ts),
                app=routed.app,
                task=routed.task,
                features=features,
                candidates=route.candidates,
                probabilities=route.probabilities,
                provider=chosen.provider,
                model=chosen.model,
                policy=route.policy,
                policy_version=route.policy_version,
                propensity=route.propensity,
                overrides=routed.overrides,
                stream=routed.stream,
                fallbacks=[tried.arm.name for tried in attempt_log.tried],
                fallback_statuses=[tried.status for tried in attempt_log.tried],
                served_by=attempt_log.served.name if attempt_log.served is not None else "",
            )
        )
        for usage in attempt_log.usages:
            runtime.emitter.emit(usage)
