"""The gateway core, the same for every inbound API: candidates, route, attempts, answer.

``Gateway`` is built without I/O; ``start(resources)`` (app lifespan) is handed the
resources the lifespan opened (``proxy.resources``: clock, upstream client, Redis client,
emitter) and builds the quota gate, the attempt loop and the challenger feed over them;
``stop()`` stops the feed and the loop (the lifespan closes the resources).

Given ``adapters_for`` (how the app builds a catalog's adapters), the gateway watches
``CATALOG_FILE`` (``proxy.routing.catalog_file``) and serves a changed catalog without a
restart: ``serve_catalog`` swaps in its adapters and candidate arms, built once there.

``execute(routed, inbound)`` routes one canonical request (``RoutedRequest``) and answers in the
inbound API's format (``Inbound``). It logs one ``Decision`` event per routed
request from what the attempt loop returns (``Attempts``), so it can record the fallbacks,
followed by one ``Usage`` event per attempt (a served stream's when it ends, from the stream).
A non-streamed answer's events and access line (an embedding's too) are made on the loop's next
turn, once the answer is written: the client does not wait for them.
Requests refused before any attempt (bad input, no candidate) emit nothing.

With tracing on (``proxy.tracing``), the routing decision gets its own span, and the decision
goes on the request's server span, whose trace and span ids the ``Decision`` event carries;
off, the gateway holds no tracer and does none of it.
"""

from __future__ import annotations

import logging
import os
import random
from asyncio import get_running_loop
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from starlette.responses import Response

from proxy import access_log, errors, tracing
from proxy.adapters.base import Adapter, Answer, UpstreamFailure
from proxy.attempts.attempt_loop import AttemptLoop, Attempts, Interrupted, UpstreamStream
from proxy.attempts.embedding_loop import Embedded, EmbeddingJob, EmbeddingLoop
from proxy.attempts.exchange_ring import ExchangeRing
from proxy.attempts.quota_gate import QuotaGuard
from proxy.attempts.stream_relay import RelayResponse, Render
from proxy.decision_ids import DecisionIds
from proxy.edge.scrub import Scrubber
from proxy.emitter import EventEmitter
from proxy.metrics import Counts, ProxyMetrics
from proxy.recorded_spans import RecordingTracer
from proxy.resources import Resources
from proxy.routed_request import RoutedRequest
from proxy.routing.candidates import Arm, Candidates
from proxy.routing.catalog_file import CatalogFile
from proxy.routing.challenger import ChallengerFeed
from proxy.routing.champion_file import ChampionFile
from proxy.routing.health import Rules
from proxy.routing.latency import LatencyEstimates
from proxy.routing.router import OVERRIDE_VERSION, Route, Router
from proxy.routing.tasks import TASK_HEADER, TASK_TABLE_HEADER, Tasks
from proxy.tracing import Tracing
from symphony.catalog import Catalog, resolve_policy_path
from symphony.clock import Clock, monotonic
from symphony.events import Decision, new_id
from symphony.flags import Flags
from symphony.quotas import load_quota_policy
from symphony.redaction import Redactor
from symphony.serving import ChallengerPolicy, ChampionPolicy, context_of
from symphony.settings import Settings

log = logging.getLogger(__name__)

DECISION_HEADER = "x-symphony-decision-id"
ARM_HEADER = "x-symphony-arm"
POLICY_HEADER = "x-symphony-policy"
# Which proxy process answered (``/v1/route/execute``'s decision): random per process, so it says
# nothing about the host, and lets a rollback drill see every replica behind one port.
REPLICA = os.urandom(4).hex()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the client may learn about how its request was served."""

    decision_id: str
    route: Route
    attempts: Attempts
    task: str  # the task routing used
    table: str  # the champion's table that routed it (``default`` for a task it has none for)

    @property
    def arm(self) -> str:
        """The arm that answered, else the one the policy chose."""
        return (self.attempts.served or self.route.chosen).name

    @property
    def model(self) -> str:
        return (self.attempts.served or self.route.chosen).model

    def headers(self) -> dict[str, str]:
        return {
            DECISION_HEADER: self.decision_id,
            ARM_HEADER: self.arm,
            POLICY_HEADER: self.route.policy,
            TASK_HEADER: self.task,
            TASK_TABLE_HEADER: self.table,
        }

    def summary(self) -> dict[str, Any]:
        """The decision as the native API reports it."""
        served = self.attempts.served
        return {
            "decision_id": self.decision_id,
            "task": self.task,
            "task_table": self.table,
            "provider": served.provider if served is not None else None,
            "model": served.model if served is not None else None,
            "chosen": self.route.chosen.name,
            "policy": self.route.policy,
            "policy_version": self.route.policy_version,
            "propensity": self.route.propensity,
            "replica": REPLICA,
            "fallbacks": [
                {"provider": t.arm.provider, "model": t.arm.model, "status": t.status}
                for t in self.attempts.tried
            ],
        }


class Inbound(Protocol):
    """How one inbound API renders what the gateway got (canonical OpenAI bytes)."""

    def answer(self, answer: Answer, outcome: Outcome) -> Response: ...

    def stream_renderer(self, outcome: Outcome) -> Render | None: ...

    def failure(self, failure: UpstreamFailure, outcome: Outcome) -> Response: ...


@dataclass(frozen=True, slots=True)
class _Serving:
    """What the gateway serves with once started: handed resources, and the parts built over them."""

    clock: Clock
    emitter: EventEmitter
    challenger: ChallengerFeed
    quota: QuotaGuard
    attempts: AttemptLoop
    embeddings: EmbeddingLoop
    tracing: Tracing | None  # None: tracing is off


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
        metrics: ProxyMetrics | None = None,
        adapters_for: Callable[[Catalog], Mapping[str, Adapter]] | None = None,
    ) -> None:
        """``adapters_for``: a catalog's adapters; given, ``CATALOG_FILE`` is watched and served."""
        self.settings = settings
        self.prometheus = metrics if metrics is not None else ProxyMetrics()
        self.prometheus.count(self.metrics)
        self.scrubber = scrubber if scrubber is not None else Scrubber()
        self.decision_ids = decision_ids if decision_ids is not None else DecisionIds(os.urandom(32))
        self.catalog = catalog
        self.adapters = dict(adapters)
        self.latency = LatencyEstimates()
        self.candidates = Candidates(catalog, self.adapters, Rules.from_settings(settings), self.latency)
        self.health = self.candidates.health
        self.flags = Flags(  # the environment's
            settings.learner_enabled, settings.traffic_split, evidence_bundles=settings.evidence_bundles
        )
        self.router = Router(champion, self._challenger, self._challenger_share, rng)
        self.tasks = Tasks(champion.policy)
        self.champion_file = ChampionFile(
            resolve_policy_path(settings.policy_file), catalog, self._serve_champion
        )
        self.catalog_file = (
            None
            if adapters_for is None
            else CatalogFile(
                settings.resolved_catalog_file, lambda new: self.serve_catalog(new, adapters_for(new))
            )
        )
        self._serving: _Serving | None = None

    def serve_catalog(self, catalog: Catalog, adapters: Mapping[str, Adapter]) -> None:
        """Serve ``catalog`` from the next request on: its adapters and arms, built here, once."""
        champion_arms = self.router.champion.policy.arms
        missing = sorted(arm for arm in champion_arms if not catalog.has(*arm.split("/", 1)))
        if missing:
            log.warning("the champion policy names arms the new catalog lacks (never served): %s", missing)
        self.adapters.clear()
        self.adapters.update(adapters)  # in place: the attempt loop reads this dict
        self.candidates.serve(catalog, self.adapters)
        self.champion_file.catalog = catalog
        self.catalog = catalog

    def _challenger(self) -> ChallengerPolicy:
        serving = self._serving
        return serving.challenger.current if serving is not None else ChallengerPolicy.uniform()

    def _challenger_share(self) -> float:
        serving = self._serving
        flags = serving.challenger.flags if serving is not None else self.flags
        return flags.challenger_share

    def _serve_champion(self, champion: ChampionPolicy) -> None:
        self.tasks = Tasks(champion.policy)
        self.router.champion = champion

    def task(self, name: str | None, param: str) -> str:
        """The task a request names (``param`` says where), checked against the champion's tasks."""
        return self.tasks.check(name, param)

    def _started(self) -> _Serving:
        if self._serving is None:
            raise errors.not_started()
        return self._serving

    async def start(self, resources: Resources) -> None:
        settings = self.settings
        challenger = ChallengerFeed(resources.redis, self.flags)
        await challenger.start()
        self.champion_file.start()
        if self.catalog_file is not None:
            self.catalog_file.start()
        quota = QuotaGuard(
            resources.redis,
            load_quota_policy(resolve_policy_path(settings.quota_policy_file)),
            resources.clock,
            fail_mode=settings.quota_fail_mode,
            local_share=settings.quota_local_share / settings.proxy_workers,
            lease_requests=settings.quota_lease_requests,
        )
        attempts = AttemptLoop(
            resources.http,
            self.adapters,
            self.health,
            self.latency,
            resources.clock,
            resources.emitter,
            quota,
            ttft_limit_s=settings.ttft_limit_ms / 1000,
            answer_limit_s=settings.answer_limit_ms / 1000 or None,
            scrubber=self.scrubber,
            tracer=resources.tracing.tracer if resources.tracing is not None else None,
            metrics=self.prometheus,
            exchanges=ExchangeRing(
                resources.redis,
                lambda: challenger.flags.evidence_bundles,
                Redactor(self.scrubber.secrets, settings.evidence_redact_patterns),
                slow_s=settings.slo_p95_ms / 1000,
            ),
        )
        embeddings = EmbeddingLoop(
            resources.http,
            self.adapters,
            self.health,
            resources.clock,
            quota,
            limit_s=settings.ttft_limit_ms / 1000,
            scrubber=self.scrubber,
        )
        self._serving = _Serving(
            resources.clock, resources.emitter, challenger, quota, attempts, embeddings, resources.tracing
        )

    async def stop(self) -> None:
        serving, self._serving = self._serving, None
        if serving is not None:
            await serving.attempts.close()
            await serving.quota.close()
            await serving.challenger.close()
            await self.champion_file.close()
            if self.catalog_file is not None:
                await self.catalog_file.close()

    async def execute(self, routed: RoutedRequest, inbound: Inbound) -> Response:
        serving = self._started()
        now = monotonic()
        tracer = serving.tracing.tracer if serving.tracing is not None else None
        decision_id = ""
        try:
            if tracer is None:
                route, decision_id, ts = self._decide(serving, routed, now)
            else:
                route, decision_id, ts = self._decide_traced(tracer, serving, routed, now)
            attempts = await serving.attempts.run(routed, route, decision_id, self._deadline(routed, now))
        except errors.ApiError as refusal:
            if access_log.enabled():
                access_log.log_request(routed, decision_id, refusal.status, now, error=refusal.code)
            raise
        trace_ids = (
            _annotate_request(routed, route, decision_id, attempts)
            if tracer is not None and attempts.attempted
            else ("", "")
        )
        outcome = Outcome(decision_id, route, attempts, routed.task, self.tasks.table(routed.task))
        record = partial(_record, serving.emitter, routed, route, ts, outcome, trace_ids, now)
        try:
            response = _answer(inbound, outcome)
        except BaseException as error:
            record(access_log.interrupted_status(error), monotonic())
            raise
        if isinstance(response, RelayResponse):
            record(response.status_code, monotonic())  # a stream's usage event comes at its end, after this
        else:  # the records wait until the answer is written: the client does not wait for them
            get_running_loop().call_soon(record, response.status_code, monotonic())
        return response

    def embedding_arms(self, model: str) -> tuple[Arm, ...]:
        """The arms serving embedding model ``model`` (plain or ``provider/model``) that have an adapter."""
        return tuple(
            Arm(provider, name, f"{provider}/{name}", price.as_price())
            for provider, name, price in self.catalog.embedding_arms(model)
            if provider in self.adapters
        )

    async def embed(self, job: EmbeddingJob) -> tuple[Embedded, dict[str, str]]:
        """Route one embeddings request; what happened, and the headers its answer carries."""
        serving = self._started()
        now = monotonic()
        ts = serving.clock.now_ms()
        decision_id = self.decision_ids.issue(ts, job.app)
        try:
            done = await serving.embeddings.run(
                job, decision_id, now + self.settings.request_deadline_ms / 1000
            )
        except errors.ApiError as refusal:
            if access_log.enabled():
                access_log.log_line(job.app, job.task, "", refusal.status, now, error=refusal.code)
            raise
        chosen = done.served or (done.tried[0].arm if done.tried else job.arms[0])
        # As a chat answer's: the records wait until the answer is written.
        record = partial(
            _record_embedding, serving.emitter, self.prometheus, job, done, chosen, decision_id, ts
        )
        get_running_loop().call_soon(record, now, monotonic())
        headers = {
            DECISION_HEADER: decision_id,
            ARM_HEADER: chosen.name,
            POLICY_HEADER: "override",
            TASK_HEADER: job.task,
        }
        return done, headers

    def _deadline(self, routed: RoutedRequest, now: float) -> float:
        """When the request must be answered: ``REQUEST_DEADLINE_MS``, or its ``latency_budget_ms``."""
        limit_ms: float = self.settings.request_deadline_ms
        budget_ms = routed.constraints.latency_budget_ms
        if budget_ms is not None and budget_ms < limit_ms:
            limit_ms = budget_ms
        return now + limit_ms / 1000

    def _decide(self, serving: _Serving, routed: RoutedRequest, now: float) -> tuple[Route, str, int]:
        """The route, and the decision's id and event time."""
        route = self._route(routed, now)
        ts = serving.clock.now_ms()
        return route, self.decision_ids.issue(ts, routed.app), ts

    def _decide_traced(
        self, tracer: RecordingTracer, serving: _Serving, routed: RoutedRequest, now: float
    ) -> tuple[Route, str, int]:
        started = tracing.now_ns()
        try:
            route, decision_id, ts = self._decide(serving, routed, now)
        except BaseException as exc:
            tracing.route_failed(tracer, started, exc)
            raise
        tracing.record_route(
            tracer,
            started,
            decision_id=decision_id,
            policy=route.policy,
            policy_version=route.policy_version,
            chosen=route.chosen.name,
            propensity=route.propensity,
            candidates=route.candidates,
        )
        return route, decision_id, ts

    def _route(self, routed: RoutedRequest, now: float) -> Route:
        candidates = self.candidates.select(
            routed.body, routed.pin, routed.constraints, now, key=routed.key, estimate=routed.estimate
        )
        health = self.health
        weights = None if health.quiet(now) else health.weights([arm.provider for arm in candidates], now)
        pinned = routed.pin is not None and routed.pin.model is not None
        context = context_of(routed.features())
        return self.router.route(routed.task, candidates, pinned=pinned, weights=weights, context=context)

    def metrics(self) -> Counts:
        """Counters for ``GET /metrics``: events, spans per destination (none untraced), the quota gate."""
        serving = self._serving
        if serving is None:  # not started, or stopped: no counters to show
            return {}
        emitter, quota, spans = serving.emitter, serving.quota, serving.tracing
        counts = spans.counts() if spans is not None else {}
        return {
            "symphony_spans_exported": {(("destination", d),): n for d, (n, _) in counts.items()},
            "symphony_spans_dropped": {(("destination", d),): n for d, (_, n) in counts.items()},
            "symphony_events_published": emitter.published,
            "symphony_events_dropped": emitter.dropped,
            "symphony_events_pending": emitter.pending,
            "symphony_quota_degraded": float(quota.degraded),
            "symphony_quota_local_grants": quota.local_grants,
            "symphony_quota_local_tokens": quota.local_tokens,
        }


def _annotate_request(
    routed: RoutedRequest, route: Route, decision_id: str, attempts: Attempts
) -> tuple[str, str]:
    """The decision on the request's server span; its trace and span ids (empty outside a traced request)."""
    span = tracing.request_span()
    if span is None:
        return "", ""
    served = attempts.served
    tracing.annotate_request(
        span,
        decision_id=decision_id,
        policy_version=route.policy_version,
        requested_model=str(routed.body.get("model", "")),
        overrides=routed.overrides,
        quota_remaining=attempts.quota_remaining,
        served=(served.provider, served.model) if served is not None else None,
    )
    return tracing.span_ids(span)


def _record(
    emitter: EventEmitter,
    routed: RoutedRequest,
    route: Route,
    ts: int,
    outcome: Outcome,
    trace_ids: tuple[str, str],
    started: float,
    status: int,
    answered: float,
) -> None:
    """A request's decision event (when it made an attempt), its usage events and its access line."""
    attempts = outcome.attempts
    if attempts.attempted:
        emitter.emit(_decision(routed, route, outcome.decision_id, ts, attempts, trace_ids))
        for usage in attempts.usages:
            emitter.emit(usage)
    if access_log.enabled():
        served = attempts.served.name if attempts.served is not None else None
        access_log.log_request(
            routed,
            outcome.decision_id,
            status,
            started,
            served=served,
            tried=attempts.tried,
            answered=answered,
        )


def _record_embedding(
    emitter: EventEmitter,
    prometheus: ProxyMetrics,
    job: EmbeddingJob,
    done: Embedded,
    chosen: Arm,
    decision_id: str,
    ts: int,
    started: float,
    answered: float,
) -> None:
    """An embeddings request's decision event, its usage events (timed into ``/metrics`` as a chat
    attempt's) and its access line."""
    names = [arm.name for arm in job.arms]
    emitter.emit(
        Decision(
            event_id=new_id(ts),
            ts=ts,
            decision_id=decision_id,
            request_id=new_id(ts),
            app=job.app,
            task=job.task,
            features={
                "inputs": float(job.inputs),
                "prompt_tokens": float(job.estimate.prompt_tokens),
            },
            candidates=names,
            probabilities=[1.0 if name == chosen.name else 0.0 for name in names],
            provider=chosen.provider,
            model=chosen.model,
            policy="override",  # the caller named the model: no policy draw
            policy_version=OVERRIDE_VERSION,
            propensity=1.0,
            overrides={"model": str(job.body.get("model", ""))},
            quota_remaining=done.remaining,
            stream=False,
            fallbacks=[tried.arm.name for tried in done.tried],
            fallback_statuses=[tried.status for tried in done.tried],
            served_by=done.served.name if done.served is not None else "",
        )
    )
    for usage in done.usages:
        emitter.emit(usage)
        prometheus.attempt_finished(usage, None)
    if access_log.enabled():
        result = done.result
        status = result.http_status if isinstance(result, UpstreamFailure) else 200
        served = done.served.name if done.served is not None else None
        access_log.log_line(
            job.app,
            job.task,
            decision_id,
            status,
            started,
            served=served,
            tried=done.tried,
            answered=answered,
        )


def _decision(
    routed: RoutedRequest,
    route: Route,
    decision_id: str,
    ts: int,
    attempts: Attempts,
    trace_ids: tuple[str, str],
) -> Decision:
    chosen = route.chosen
    return Decision(
        event_id=new_id(ts),
        ts=ts,
        decision_id=decision_id,
        request_id=new_id(ts),
        app=routed.app,
        task=routed.task,
        features=routed.features(),
        candidates=route.candidates,
        probabilities=route.probabilities,
        provider=chosen.provider,
        model=chosen.model,
        policy=route.policy,
        policy_version=route.policy_version,
        propensity=route.propensity,
        overrides=routed.overrides,
        quota_remaining=attempts.quota_remaining,
        stream=routed.stream,
        trace_id=trace_ids[0],
        span_id=trace_ids[1],
        fallbacks=[tried.arm.name for tried in attempts.tried],
        fallback_statuses=[tried.status for tried in attempts.tried],
        served_by=attempts.served.name if attempts.served is not None else "",
    )


def _answer(inbound: Inbound, outcome: Outcome) -> Response:
    """The attempts' result in the inbound API's format; what interrupted them is raised again."""
    result = outcome.attempts.result
    if isinstance(result, Interrupted):
        raise result.error
    if isinstance(result, Answer):
        return inbound.answer(result, outcome)
    if isinstance(result, UpstreamStream):
        return RelayResponse(result, render=inbound.stream_renderer(outcome), headers=outcome.headers())
    return inbound.failure(result, outcome)
