"""The dispatcher: plans the queued jobs into usage windows and sends each through the proxy at its slot.

Every ``replan_s`` of real time, and whenever the queue changes (``JOBS_VERSION``) or the
``scheduler_enabled`` flag flips, it reads the waiting jobs (``symphony.jobs``), the windows of
the quota policy over a 12-hour horizon with what each window open now already holds (the
quota buckets in Redis) and a forecast of interactive use (the mean per UTC hour of day the
engine learns from ClickHouse and publishes in ``symphony:forecast:*``; while none is published,
the burn rate its quotas branch publishes in ``symphony:eta:*``, over the window's span), and
plans them
(``scheduler.planner``: the MILP, the greedy plan as fallback). A job the plan puts in a slot
is marked ``planned`` and is due at the start of its span in that slot (``max(slot start,
now)``) on that slot's provider; a job no slot has room for before its deadline (the
overflow, or a job allowing no provider with a usage window) is due at once, on any
provider it allows, so it still meets its deadline at pay-per-token prices; but a job
left out whose deadline is beyond the horizon waits for a later plan. With
``scheduler_enabled`` false (live, ``symphony flags --scheduler off``) every waiting job is
due at once: the baseline; the queue is kept as it is.

Every ``tick_s`` the due jobs are sent, at most ``concurrency`` at a time: each is first
claimed (``JobStore.claim``: queued or planned -> running, atomically, only while this
dispatcher's heartbeat lives), then posted to the proxy's ``/v1/chat/completions`` with the
dispatcher's token and the claim (``proxy.edge.job_dispatch``), so it gets the routing,
quotas, events and traces of interactive traffic as the job's app. The answer ends the job:
``done`` with the chat.completion, else ``failed`` with the proxy's error (a job the proxy
admitted is not retried: it might have run). A dispatch the proxy never admitted (it could not
be reached, it was not ready, it refused the dispatcher's token) is released back to the queue
and tried again ``RETRY_S`` later. So is one the proxy refused before trying any provider
(``symphony.jobs.NOT_RUN``: a quota or the app's budget or rate spent, every provider cooling down;
the proxy withdraws its admission): it waits for the answer's ``retry-after`` (event time, at least
``RETRY_S`` of real time) if its deadline leaves room for that, else it fails with the refusal.
At most once: a job found ``running`` whose dispatcher stopped beating (it crashed) is failed as
``interrupted`` and never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import orjson
import redis
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from scheduler.forecast_publisher import read_forecast
from scheduler.planner import plan
from scheduler.problem import Job as PlanJob
from scheduler.problem import Plan, Problem
from scheduler.windows import HORIZON_MS, CurrentUse, Forecast, Slot, slots, subscription_limit, windowed
from symphony.cancellation import cancel_requested
from symphony.catalog import Catalog, load_catalog, resolve_policy_path
from symphony.clock import Clock, event_seconds_to_real, monotonic, shared_clock
from symphony.flags import Flags
from symphony.health import health_fields
from symphony.jobs import NOT_RUN, Job, JobStore
from symphony.keys import FLAGS_KEY, eta_key
from symphony.quotas import MINUTE_MS, QuotaPolicy, load_quota_policy
from symphony.redis_client import async_redis, sync_redis
from symphony.settings import Settings, SettingsError

log = logging.getLogger(__name__)

JOB_HEADER = "x-symphony-job"
DISPATCH_HEADER = "x-symphony-dispatch"
TICK_S = 0.2
REPLAN_S = 5.0
HEARTBEAT_S = 0.5
RECOVER_S = 1.0  # how often it looks for running jobs whose dispatcher died
RETRY_S = 5.0  # real seconds before a job whose dispatch was not admitted is tried again
CONCURRENCY = 16
# A job is planned to start at least this long before its deadline, so that its answer comes in time
# (planned to start a few seconds before its deadline, it would be answered after it).
ANSWER_MS = 5 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class Due:
    """A job to send at ``at_ms`` (event time), limited to ``provider`` ("" any it allows)."""

    job_id: str
    at_ms: int
    provider: str


@dataclass(frozen=True)
class Schedule:
    """What one planning round decided: the plan (None when the scheduler is off) and what is due when."""

    now_ms: int
    enabled: bool
    jobs: list[Job]
    problem: Problem | None = None
    plan: Plan | None = None
    due: list[Due] = field(default_factory=list)


def eligible(job: Job, catalog: Catalog) -> frozenset[str]:
    """The providers a job may run on: a pinned model's, else its own (or its models'), else any."""
    model = job.request.get("model")
    if isinstance(model, str) and model != "auto":
        found = catalog.find_model(model)
        if found is not None:
            return frozenset({found[0]})
    return job.eligible_providers(catalog.providers)


def schedule(
    jobs: list[Job],
    now_ms: int,
    windows: list[Slot],
    catalog: Catalog,
    *,
    enabled: bool = True,
    horizon_ms: int = HORIZON_MS,
) -> Schedule:
    """When to send each waiting job: at once (scheduler off, overflow), else at its slot's start.

    A job is planned to start ``ANSWER_MS`` before its deadline at the latest. A job the plan leaves
    out whose deadline lies beyond the horizon, and which some provider with
    a window may run, is not overflow yet: it waits (no ``Due``) for a later plan, whose horizon
    reaches windows this one does not see."""
    if not enabled:
        return Schedule(now_ms, False, jobs, due=[Due(job.id, now_ms, "") for job in jobs])
    problem = Problem(
        now_ms,
        [PlanJob(job.id, job.tokens, job.deadline_ms - ANSWER_MS, eligible(job, catalog)) for job in jobs],
        windows,
    )
    made = plan(problem)
    windowed = {slot.provider for slot in windows}
    due = []
    for job, planned in zip(jobs, problem.jobs, strict=True):
        index = made.assignment.get(job.id)
        if index is None:
            if job.deadline_ms <= now_ms + horizon_ms or not planned.providers & windowed:
                due.append(Due(job.id, now_ms, ""))
        else:
            slot = windows[index]
            due.append(Due(job.id, max(slot.start_ms, now_ms), slot.provider))
    due.sort(key=lambda d: d.at_ms)
    return Schedule(now_ms, True, jobs, problem, made, due)


async def current_use(client: aioredis.Redis, policy: QuotaPolicy, now_ms: int) -> dict[str, CurrentUse]:
    """Each provider's subscription window open now: the tokens its quota bucket holds, when it opened."""
    out = {}
    for provider in policy.providers:
        limit = subscription_limit(policy, provider)
        if limit is None:
            continue
        if limit.window.reset == "first_use":
            start, used = await client.hmget(limit.key, ["start", "used"])
            if start is not None and now_ms < int(start) + limit.window.length_ms:
                out[provider] = CurrentUse(int(used or 0), int(start))
        else:
            value = await client.hget(limit.key, limit.window.buckets(now_ms)[0])
            out[provider] = CurrentUse(int(value or 0))
    return out


async def burn_forecast(client: aioredis.Redis, policy: QuotaPolicy) -> Forecast:
    """Interactive use forecast at the burn rate the engine last published for each window (tokens/min)."""
    rates: dict[str, float] = {}
    for provider in policy.providers:
        limit = subscription_limit(policy, provider)
        if limit is None:
            continue
        raw = await client.hget(eta_key(provider, limit.metric_key, limit.window.name), "burn_per_min")
        rates[provider] = float(raw) if raw else 0.0

    def forecast(provider: str, start_ms: int, end_ms: int) -> int:
        return int(rates.get(provider, 0.0) * (end_ms - start_ms) / MINUTE_MS)

    return forecast


async def interactive_forecast(client: aioredis.Redis, policy: QuotaPolicy) -> Forecast:
    """The forecast the engine learned from ClickHouse (``scheduler.forecast_publisher``), else, while
    none is published, the engine's live burn rates."""
    learned = await read_forecast(client, list(windowed(policy)))
    return learned if learned is not None else await burn_forecast(client, policy)


async def plan_queue(
    client: aioredis.Redis,
    now_ms: int,
    *,
    catalog: Catalog,
    policy: QuotaPolicy,
    horizon_ms: int = HORIZON_MS,
    enabled: bool = True,
) -> Schedule:
    """The schedule of the jobs waiting in Redis now (``symphony scheduler-plan`` prints it)."""
    jobs = await JobStore(client).waiting()
    forecast = await interactive_forecast(client, policy)
    windows = slots(policy, now_ms, horizon_ms, forecast, await current_use(client, policy, now_ms))
    return await asyncio.to_thread(
        schedule, jobs, now_ms, windows, catalog, enabled=enabled, horizon_ms=horizon_ms
    )


class Dispatcher:
    def __init__(
        self,
        client: aioredis.Redis,
        http: httpx.AsyncClient,
        clock: Clock,
        token: str,
        *,
        defaults: Flags,
        catalog: Catalog | None = None,
        policy: QuotaPolicy | None = None,
        owner: str | None = None,
        tick_s: float = TICK_S,
        replan_s: float = REPLAN_S,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.store = JobStore(client)
        self._client = client
        self._http = http
        self._clock = clock
        self._token = token
        self._defaults = defaults
        self._catalog = catalog or load_catalog()
        self._policy = policy or load_quota_policy()
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
        self._tick_s = tick_s
        self._replan_s = replan_s
        self._concurrency = concurrency
        self._due: list[Due] = []
        self._seen: tuple[int, bool] | None = None  # (queue version, enabled) of the last plan
        self._planned_at = -float("inf")
        self._recovered_at = -float("inf")
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self._held: dict[str, float] = {}  # job id -> when (monotonic) it may be tried again
        self.last: Schedule | None = None
        self.sent = 0

    async def run(self, stop: asyncio.Event, grace_s: float = 30.0) -> None:
        """Until ``stop`` is set; then waits up to ``grace_s`` for the jobs in flight."""
        beating = asyncio.create_task(self._beat(stop))
        try:
            await self.store.heartbeat(self.owner)
            while not stop.is_set():
                try:
                    await self.tick()
                except (redis.RedisError, OSError) as exc:
                    log.warning("dispatcher round failed (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._tick_s)
            if self.in_flight:
                log.info("stopping: waiting up to %gs for %d jobs in flight", grace_s, len(self.in_flight))
                await asyncio.wait(list(self.in_flight.values()), timeout=grace_s)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            if not self.in_flight:  # a job still in flight stays running until this heartbeat expires
                await self.store.stop_beating(self.owner)

    async def _beat(self, stop: asyncio.Event) -> None:
        while not cancel_requested():  # a heartbeat may have lost run()'s cancel (symphony.cancellation)
            try:
                await self.store.heartbeat(self.owner)
            except (redis.RedisError, OSError) as exc:
                log.warning("dispatcher heartbeat failed (%s)", exc)
            await asyncio.sleep(HEARTBEAT_S)

    async def tick(self) -> None:
        """One round: fail the interrupted, replan when due, send what is due now."""
        now = self._clock.now_ms()
        if monotonic() - self._recovered_at >= RECOVER_S:
            self._recovered_at = monotonic()
            for job_id in await self.store.fail_interrupted(now, alive=self.owner):
                log.warning("job %s was running when its dispatcher died: failed as interrupted", job_id)
        flags = self._defaults.merged(cast(Mapping[Any, Any], await self._client.hgetall(FLAGS_KEY)))
        seen = (await self.store.version(), flags.scheduler_enabled)
        if seen != self._seen or monotonic() - self._planned_at >= self._replan_s:
            await self.replan(now, flags.scheduler_enabled)
            self._seen = seen
        self._send_due(self._clock.now_ms())

    async def replan(self, now: int, enabled: bool) -> None:
        self._planned_at = monotonic()
        self._held = {job_id: until for job_id, until in self._held.items() if until > self._planned_at}
        made = await plan_queue(
            self._client, now, catalog=self._catalog, policy=self._policy, enabled=enabled
        )
        self.last = made
        self._due = made.due
        by_id = {job.id: job for job in made.jobs}
        for due in made.due:
            if due.provider and _moved(by_id[due.job_id], due, now):
                await self.store.mark_planned(due.job_id, due.provider, due.at_ms, now)

    def _send_due(self, now: int) -> None:
        waiting = []
        for due in self._due:
            held = self._held.get(due.job_id, 0.0) > monotonic()
            if due.at_ms <= now and len(self.in_flight) < self._concurrency and not held:
                if due.job_id not in self.in_flight:
                    self.in_flight[due.job_id] = asyncio.create_task(self._send(due))
            else:
                waiting.append(due)
        self._due = waiting

    async def _send(self, due: Due) -> None:
        try:
            await self._dispatch(due)
        except Exception as exc:
            log.exception("dispatching job %s failed", due.job_id)
            with contextlib.suppress(Exception):  # best effort: else it waits for this process to end
                job = await self.store.get(due.job_id)
                if job is not None and job.state == "running" and job.owner == self.owner:
                    await self._give_back(job, None, f"dispatcher error: {exc!r}")
        finally:
            self.in_flight.pop(due.job_id, None)

    async def _dispatch(self, due: Due) -> None:
        job = await self.store.get(due.job_id)
        if job is None:
            return
        nonce = await self.store.claim(job.id, self.owner, due.provider, self._clock.now_ms())
        if nonce is None:
            return  # cancelled, or claimed by another dispatcher, since the plan
        self.sent += 1
        headers = {"authorization": f"Bearer {self._token}", JOB_HEADER: job.id, DISPATCH_HEADER: nonce}
        headers["content-type"] = "application/json"
        try:
            answer = await self._http.post(
                "/v1/chat/completions", content=orjson.dumps(job.request), headers=headers
            )
        except httpx.HTTPError as exc:
            await self._give_back(job, None, f"dispatch: {exc!r}")
            return
        if answer.status_code == 200:
            await self.store.finish(job, self.owner, self._clock.now_ms(), status=200, result=answer.json())
        else:
            await self._give_back(job, answer.status_code, _message(answer), self._retry_in(job, answer))

    def _retry_in(self, job: Job, answer: httpx.Response) -> float | None:
        """Real seconds to hold a job whose dispatch the proxy refused, if it is to be sent again; None
        when waiting cannot help: its ``retry-after`` is missing or runs past the job's deadline."""
        if _error_code(answer) not in NOT_RUN:
            return RETRY_S  # the proxy admitted it (it ran, it is failed) or never did (it is sent again)
        try:
            wait_s = float(answer.headers.get("retry-after", ""))
        except ValueError:
            return None
        if self._clock.now_ms() + wait_s * 1000 >= job.deadline_ms:
            return None
        return max(RETRY_S, event_seconds_to_real(self._clock, wait_s))

    async def _give_back(
        self, job: Job, status: int | None, error: str, retry_in_s: float | None = RETRY_S
    ) -> None:
        """A dispatch that did not succeed: back in the queue, held for ``retry_in_s``, if the proxy never
        admitted it (or withdrew the admission) and waiting can help; else failed."""
        if retry_in_s is not None and await self.store.release(job.id, self.owner, self._clock.now_ms()):
            self._held[job.id] = monotonic() + retry_in_s
            log.warning(
                "job %s did not run (%s: %s); queued again in %.1f s", job.id, status, error, retry_in_s
            )
            return
        await self.store.finish(job, self.owner, self._clock.now_ms(), status=status, error=error)


def _moved(job: Job, due: Due, now: int) -> bool:
    """Whether the plan changed for ``job``: another provider, or another time (a job already due stays
    planned at the time it first became due, however many rounds it waits for a free dispatch)."""
    if job.planned_provider != due.provider or job.planned_ms is None:
        return True
    return not (job.planned_ms <= now and due.at_ms <= now) and job.planned_ms != due.at_ms


def _error(answer: httpx.Response) -> dict[str, Any]:
    try:
        error = answer.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _error_code(answer: httpx.Response) -> str:
    code = _error(answer).get("code")
    return code if isinstance(code, str) else ""


def _message(answer: httpx.Response) -> str:
    message = _error(answer).get("message")
    return message if isinstance(message, str) else answer.text[:500]


def _health_app(dispatcher: Dispatcher) -> Starlette:
    async def health(request: Request) -> Response:
        last = dispatcher.last
        body = {
            **health_fields("scheduler"),
            "owner": dispatcher.owner,
            "in_flight": len(dispatcher.in_flight),
            "sent": dispatcher.sent,
            "waiting": 0 if last is None else len(last.jobs),
            "scheduler_enabled": None if last is None else last.enabled,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return Starlette(routes=[Route("/health", health, methods=["GET"])])


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the dispatcher's drains the jobs in flight first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _read_clock(url: str) -> Clock:
    client = sync_redis(url, socket_connect_timeout=2.0, socket_timeout=2.0)
    try:
        return shared_clock(client)
    finally:
        client.close()


async def serve(settings: Settings) -> None:
    """The ``symphony scheduler`` process: the dispatcher, and ``GET /health`` on ``SCHEDULER_PORT``."""
    if settings.dispatcher_token is None:
        raise SettingsError(
            "invalid setting DISPATCHER_TOKEN=None: expected a secret of at least 16 characters, the same "
            "for the proxy and the scheduler (`symphony up` makes one in var/dispatcher-token)"
        )
    clock = await asyncio.to_thread(_read_clock, settings.redis_url)
    client = async_redis(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
    timeout = httpx.Timeout(settings.request_deadline_ms / 1000 + 10, connect=5.0)
    async with httpx.AsyncClient(base_url=settings.proxy_url, timeout=timeout) as http:
        dispatcher = Dispatcher(
            client,
            http,
            clock,
            settings.dispatcher_token.get_secret_value(),
            defaults=Flags(settings.learner_enabled, settings.traffic_split, settings.scheduler_enabled),
            catalog=settings.read_catalog(),
            policy=load_quota_policy(resolve_policy_path(settings.quota_policy_file)),
        )
        config = uvicorn.Config(
            _health_app(dispatcher),
            host="127.0.0.1",
            port=settings.scheduler_port,
            lifespan="off",
            access_log=False,
            log_level="warning",
            log_config=None,  # uvicorn's lines go through the process's handler (LOG_FORMAT)
        )
        server = _QuietServer(config)
        stop = asyncio.Event()

        def stopping() -> None:
            stop.set()
            server.should_exit = True

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping)
        log.info("dispatcher %s sending jobs to %s", dispatcher.owner, settings.proxy_url)
        running = asyncio.create_task(dispatcher.run(stop, grace_s=settings.request_deadline_ms / 1000))
        await server.serve()
        stopping()
        await running
    await client.aclose()


def run_dispatcher(settings: Settings) -> None:
    """Run the scheduler process until SIGTERM or SIGINT (blocking)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per job sent
    asyncio.run(serve(settings))
