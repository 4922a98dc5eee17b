"""Two simulated weeks of interactive use and deferrable jobs, on a simulated clock, into ClickHouse.

Week one runs with the scheduler off (every job is sent when it comes: the baseline), week two
with it on. The clock advances in ``tick_ms`` steps (30 minutes, a replan each); at each tick:

- **interactive use** arrives on OpenAI, Anthropic and Gemini: per provider a mean per UTC hour
  of day (busier 08:00-20:00) times log-normal noise, in ``bursts`` attempts spread over the tick;
- **jobs** arrive (Poisson, busier by day), each with a token estimate (log-normal), a deadline
  ``deadline_h`` hours after it comes, and one, two or three of the providers allowed; what it
  really uses is its estimate times log-normal noise (``job_noise``), so plans are made on
  estimates as they are in the real system;
- with the scheduler on, the waiting jobs are planned exactly as the dispatcher plans them
  (``scheduler.dispatcher.schedule``: the windows model over a 12-hour horizon with what each
  open window holds, and the interactive forecast learned from the history in ClickHouse,
  ``scheduler.history.learn_forecast``, refreshed every ``forecast_every_ms``), and the jobs
  due before the next tick are sent at their time; with it off, every job is sent when it comes.

The workload (interactive use, the jobs and what each really uses) is drawn from the seed alone, so
it is the same whatever the scheduler decides; a tick's attempts are settled in time order at its
end. A job sent without a provider (off, or overflow) goes where the proxy's quota filter would send
it: the provider it allows whose window has the most room left. Every attempt is written to
ClickHouse as the proxy writes it, a ``decision`` (with the job's terms in ``overrides``) and a
``usage`` row, so ``scheduler.report`` reads the weeks as it reads a real stack's.

What this does not exercise: the dispatcher's process, HTTP, the proxy and its hard quota caps
(here a window may be used past its budget: that is the overflow, billed pay-per-token). The
planning, the windows model, the forecast and the report are the production code.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scheduler.dispatcher import schedule
from scheduler.history import Learned, Query, learn_forecast
from scheduler.windows import HORIZON_MS, CurrentUse, Forecast, slots, windowed
from symphony.catalog import Catalog
from symphony.events import Decision, Usage, new_id
from symphony.jobs import Job
from symphony.quotas import DAY_MS, HOUR_MS, MINUTE_MS, Limit, QuotaPolicy

WEEK_MS = 7 * DAY_MS
REQUEST = {"model": "auto", "messages": [{"role": "user", "content": "summarise the batch"}]}
# Mean interactive tokens per hour, per provider (the busy hours' mean; quiet hours run at QUIET of it).
INTERACTIVE_PER_H = {"openai": 13_000_000, "anthropic": 6_000_000, "gemini": 8_500_000}
QUIET = 0.35
BUSY_HOURS = range(8, 20)


@dataclass(frozen=True)
class WorkloadConfig:
    start_ms: int  # a UTC midnight: week one starts here, week two a week later
    seed: int = 7
    days: int = 7  # per week
    tick_ms: int = 30 * MINUTE_MS
    jobs_per_day: float = 260.0
    job_mean_tokens: int = 3_000_000
    job_sigma: float = 0.8  # of the log-normal job sizes
    job_noise: float = 0.1  # sigma of actual / estimate
    interactive_noise: float = 0.2
    deadline_h: tuple[float, float] = (6.0, 30.0)
    bursts: int = 3  # interactive attempts per provider per tick
    forecast_every_ms: int = 6 * HOUR_MS
    interactive_per_h: dict[str, int] = field(default_factory=lambda: dict(INTERACTIVE_PER_H))

    @property
    def week_ms(self) -> int:
        return self.days * DAY_MS

    @property
    def end_ms(self) -> int:
        return self.start_ms + 2 * self.week_ms


@dataclass
class _Open:
    """One provider's window open now: when it opened and what it holds."""

    start_ms: int
    used: int = 0


@dataclass
class WeeksRun:
    config: WorkloadConfig
    jobs: int = 0
    sent: int = 0
    plans: int = 0
    plan_seconds: list[float] = field(default_factory=list)
    forecast_notes: list[str] = field(default_factory=list)


Sink = Callable[[list[Decision], list[Usage]], None]


class Workload:
    """The simulated weeks: ``run`` drives the clock; attempts go to ``sink`` (ClickHouse)."""

    def __init__(
        self, config: WorkloadConfig, policy: QuotaPolicy, catalog: Catalog, query: Query, sink: Sink
    ) -> None:
        self.config, self.policy, self.catalog = config, policy, catalog
        self._query, self._sink = query, sink
        self._rng = random.Random(config.seed)
        self._limits: dict[str, Limit] = windowed(policy)
        self._open: dict[str, _Open] = {}
        self._waiting: dict[str, Job] = {}
        self._actual: dict[str, int] = {}  # job id -> the tokens it will really use
        self._pending: list[tuple[int, str, int, Job | None]] = []  # this tick's attempts
        self._decisions: list[Decision] = []
        self._usage: list[Usage] = []
        self._forecast: Forecast | None = None
        self._forecast_at = -math.inf
        self.run_info = WeeksRun(config)

    def run(self, say: Callable[[str], None]) -> WeeksRun:
        c = self.config
        now = c.start_ms
        while now < c.end_ms or (self._waiting and now < c.end_ms + DAY_MS * 2):
            enabled = now >= c.start_ms + c.week_ms
            if enabled:
                self._plan_and_send(now)
            if now < c.end_ms:
                self._arrivals(now, enabled)
                self._interactive(now)
            self._settle()
            now += c.tick_ms
            if (now - c.start_ms) % DAY_MS == 0:
                self._flush()
                day = (now - c.start_ms) // DAY_MS
                say(
                    f"day {day} done ({'scheduler on' if enabled else 'scheduler off'}): "
                    f"{self.run_info.jobs} jobs so far, {len(self._waiting)} waiting"
                )
        self._flush()
        return self.run_info

    # --- the workload --------------------------------------------------------------------------------

    def _busy(self, ms: int) -> bool:
        return (ms // HOUR_MS) % 24 in BUSY_HOURS

    def _interactive(self, now: int) -> None:
        c = self.config
        for provider, per_h in c.interactive_per_h.items():
            mean = per_h * (1.0 if self._busy(now) else QUIET) * c.tick_ms / HOUR_MS
            noise = self._rng.lognormvariate(-(c.interactive_noise**2) / 2, c.interactive_noise)
            for burst in range(c.bursts):
                at = now + (2 * burst + 1) * c.tick_ms // (2 * c.bursts)
                self._attempt(at, provider, int(mean * noise / c.bursts))

    def _arrivals(self, now: int, enabled: bool) -> None:
        c = self.config
        rate = c.jobs_per_day * c.tick_ms / DAY_MS * (1.5 if self._busy(now) else 0.5)
        for _ in range(self._poisson(rate)):
            job = self._new_job(now + self._rng.randrange(c.tick_ms))
            self.run_info.jobs += 1
            if enabled:
                self._waiting[job.id] = job
            else:
                self._send(job, job.created_ms, "")

    def _poisson(self, mean: float) -> int:
        count, total = 0, self._rng.expovariate(1.0)
        while total < mean:
            count += 1
            total += self._rng.expovariate(1.0)
        return count

    def _new_job(self, at: int) -> Job:
        c = self.config
        sigma = c.job_sigma
        tokens = int(self._rng.lognormvariate(math.log(c.job_mean_tokens) - sigma**2 / 2, sigma))
        tokens = min(max(tokens, 50_000), 40_000_000)
        deadline = at + int(self._rng.uniform(*c.deadline_h) * HOUR_MS)
        providers = tuple(sorted(self._rng.sample(sorted(self._limits), self._rng.choice((1, 2, 3)))))
        job = Job(new_id(at).lower(), "batch", REQUEST, deadline, tokens, providers, created_ms=at)
        noise = c.job_noise
        # What it will really use, drawn now: the workload is the seed's, whatever the scheduler decides.
        self._actual[job.id] = max(int(tokens * self._rng.lognormvariate(-(noise**2) / 2, noise)), 1)
        return job

    # --- the scheduler -------------------------------------------------------------------------------

    def _plan_and_send(self, now: int) -> None:
        waiting = sorted(
            (job for job in self._waiting.values() if job.created_ms <= now), key=lambda job: job.deadline_ms
        )
        if not waiting:
            return
        forecast = self._learned(now)
        windows = slots(self.policy, now, HORIZON_MS, forecast, self._current(now))
        made = schedule(waiting, now, windows, self.catalog)
        if made.plan is not None:
            self.run_info.plans += 1
            self.run_info.plan_seconds.append(made.plan.seconds)
        for due in made.due:  # sent at its time, as the dispatcher (which ticks every 0.2 s) sends it
            if due.at_ms < now + self.config.tick_ms:
                self._send(self._waiting.pop(due.job_id), max(due.at_ms, now), due.provider)

    def _learned(self, now: int) -> Forecast:
        if self._forecast is None or now - self._forecast_at >= self.config.forecast_every_ms:
            self._flush()
            learned: Learned = learn_forecast(self._query, now, self._limits)
            self._forecast, self._forecast_at = learned.forecast, now
            if not self.run_info.forecast_notes or self.run_info.forecast_notes[-1] != learned.note:
                self.run_info.forecast_notes.append(learned.note)
        return self._forecast

    def _current(self, now: int) -> dict[str, CurrentUse]:
        out = {}
        for provider, limit in self._limits.items():
            window = self._window(provider, limit, now, opening=False)
            if window is not None:
                first_use = limit.window.reset == "first_use"
                out[provider] = CurrentUse(window.used, window.start_ms if first_use else None)
        return out

    # --- attempts -------------------------------------------------------------------------------------

    def _window(self, provider: str, limit: Limit, at: int, *, opening: bool) -> _Open | None:
        """The provider's window holding ``at`` (opened by this use when ``opening`` and none is)."""
        length = limit.window.length_ms
        start = at - at % length if limit.window.reset == "fixed" else None
        current = self._open.get(provider)
        inside = current is not None and current.start_ms <= at < current.start_ms + length
        if current is not None and inside and (start is None or current.start_ms == start):
            return current
        if not opening:
            return None
        self._open[provider] = _Open(at if start is None else start)
        return self._open[provider]

    def _room(self, provider: str, at: int) -> float:
        limit = self._limits[provider]
        window = self._window(provider, limit, at, opening=False)
        return 1.0 - (window.used if window else 0) / limit.cap

    def _send(self, job: Job, at: int, provider: str) -> None:
        if not provider:
            provider = max(job.providers, key=lambda p: (self._room(p, at), p))
        self.run_info.sent += 1
        self._attempt(at + MINUTE_MS, provider, self._actual.pop(job.id), job)

    def _attempt(self, at: int, provider: str, tokens: int, job: Job | None = None) -> None:
        """An attempt of this tick; the tick's are settled in time order when it ends (``_settle``)."""
        self._pending.append((at, provider, tokens, job))

    def _settle(self) -> None:
        for at, provider, tokens, job in sorted(self._pending, key=lambda attempt: attempt[0]):
            self._answer(at, provider, tokens, job)
        self._pending.clear()

    def _answer(self, at: int, provider: str, tokens: int, job: Job | None) -> None:
        """One attempt: into its provider's window (opening a first-use one), and its events."""
        limit = self._limits.get(provider)
        if limit is not None:
            window = self._window(provider, limit, at, opening=True)
            assert window is not None
            window.used += tokens
        model, price = next(iter(self.catalog.providers[provider].models.items()))
        tokens_in = tokens * 7 // 10
        decision_id = new_id(at)
        overrides = job.decision_overrides() if job is not None else {}
        arm = f"{provider}/{model}"
        self._decisions.append(_decision(decision_id, at, job, arm, overrides))
        self._usage.append(
            Usage(
                event_id=new_id(at),
                ts=at,
                decision_id=decision_id,
                app=job.app if job else "interactive",
                provider=provider,
                model=model,
                attempt=1,
                status="ok",
                ttfb_ms=300.0,
                latency_ms=2_000.0,
                input_tokens=tokens_in,
                output_tokens=tokens - tokens_in,
                cost_usd=price.cost_usd(tokens_in, tokens - tokens_in),
            )
        )

    def _flush(self) -> None:
        if self._decisions:
            self._sink(self._decisions, self._usage)
        self._decisions, self._usage = [], []


def _decision(decision_id: str, at: int, job: Job | None, arm: str, overrides: dict[str, Any]) -> Decision:
    provider, model = arm.split("/", 1)
    return Decision(
        event_id=new_id(at),
        ts=at,
        decision_id=decision_id,
        request_id=decision_id,
        app=job.app if job else "interactive",
        task=job.task if job else "chat",
        candidates=[arm],
        probabilities=[1.0],
        provider=provider,
        model=model,
        policy="champion",
        policy_version="simulated",
        propensity=1.0,
        overrides=overrides,
        served_by=arm,
    )
