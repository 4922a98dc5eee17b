"""What the providers' windows held in a past period, read from ClickHouse.

Every answered attempt is a row of ``usage`` (tokens in and out, cost); its decision, in
``decisions``, says in ``overrides`` whether a job was served (``job``) and, for a job, the
job's own record as it was dispatched: ``job_deadline_ms``, ``job_created_ms``,
``job_tokens`` (its estimate) and ``job_providers`` (the providers it allowed, comma
separated). A usage row without ``job`` is interactive use. Only attempts with status ``ok``
count: they are what the providers billed. They are read summed per provider, job and minute (at
the minute's first attempt): a first-use window rebuilt from them may count the few seconds of use
after its close in that minute in it.

The reads go through a ``Query`` (SQL in, rows out), so the same code reads ClickHouse through
the engine's query API (``symphony.engine_client``: the CLI, the dispatcher) or a store this
process owns (the simulated weeks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from scheduler.forecast import HourOfDayForecaster, PastWindow
from symphony.jobs import DECISION_FIELDS
from symphony.quotas import DAY_MS, HOUR_MS, MINUTE_MS

Query = Callable[[str], list[list[Any]]]

FORECAST_DAYS = 7


@dataclass(frozen=True, slots=True)
class Use:
    """Tokens one answered attempt used, and the job it served (``job`` empty: interactive)."""

    ts_ms: int
    provider: str
    tokens: int
    cost_usd: float
    job: str = ""
    deadline_ms: int = 0
    created_ms: int = 0
    estimate: int = 0
    allowed: tuple[str, ...] = ()


def _answered_sql(since_ms: int, until_ms: int) -> str:
    """Every answered attempt of [since, until) with the terms of the job it served ('' for none)."""
    terms = ", ".join(f"d.overrides['{name}'] AS {name}" for name in DECISION_FIELDS)
    return f"""
        SELECT toUnixTimestamp64Milli(u.ts) AS at_ms, u.provider AS provider,
               u.input_tokens + u.output_tokens AS tokens, u.cost_usd AS cost, {terms}
        FROM usage AS u FINAL
        LEFT JOIN (SELECT decision_id, overrides FROM decisions FINAL
                   WHERE ts >= fromUnixTimestamp64Milli({since_ms - DAY_MS})
                     AND ts < fromUnixTimestamp64Milli({until_ms})) AS d
        ON u.decision_id = d.decision_id
        WHERE u.status = 'ok'
          AND u.ts >= fromUnixTimestamp64Milli({since_ms}) AND u.ts < fromUnixTimestamp64Milli({until_ms})
    """


def usage_sql(since_ms: int, until_ms: int) -> str:
    """The answered attempts of [since, until), summed per provider, job and minute (one row each, at
    the minute's first attempt), so a week of traffic is a few tens of thousands of rows, not millions."""
    return f"""
        SELECT min(at_ms), provider, sum(tokens), sum(cost), job, any(job_deadline_ms), any(job_created_ms),
               any(job_tokens), any(job_providers)
        FROM ({_answered_sql(since_ms, until_ms)})
        GROUP BY provider, job, intDiv(at_ms, {MINUTE_MS})
        ORDER BY 1, 2, 5
    """


def hourly_sql(since_ms: int, until_ms: int) -> str:
    """Per provider and clock hour: interactive tokens and attempts, and the first attempt of any kind."""
    return f"""
        SELECT provider, intDiv(at_ms, {HOUR_MS}) AS hour, sumIf(tokens, job = ''), countIf(job = ''),
               min(at_ms)
        FROM ({_answered_sql(since_ms, until_ms)})
        GROUP BY provider, hour
    """


def period_use(query: Query, since_ms: int, until_ms: int) -> list[Use]:
    """The answered attempts in [since, until), oldest first, summed per provider, job and minute."""
    return [_use(row) for row in query(usage_sql(since_ms, until_ms))]


def _use(row: list[Any]) -> Use:
    ts, provider, tokens, cost, job, deadline, created, estimate, allowed = row
    return Use(
        int(ts),
        str(provider),
        int(tokens),
        float(cost),
        str(job or ""),
        int(deadline or 0),
        int(created or 0),
        int(estimate or 0),
        tuple(p for p in str(allowed or "").split(",") if p),
    )


@dataclass(frozen=True, slots=True)
class Hour:
    """One provider's clock hour: its interactive tokens and attempts, and its first attempt of any kind."""

    provider: str
    hour: int  # since the epoch
    tokens: int
    attempts: int
    first_ms: int


def interactive_hours(hours: list[Hour], until_ms: int, providers: Iterable[str]) -> list[PastWindow]:
    """Interactive tokens per provider per clock hour, from the hour of the first use (of any kind)
    to the last whole hour before ``until``; a quiet hour counts as 0 (it is history too: it pulls
    the forecast down), but the hours before anything was used are not history (the system was
    not running)."""
    if not hours:
        return []
    tokens = {(h.provider, h.hour): h.tokens for h in hours}
    first, last = min(h.first_ms for h in hours) // HOUR_MS, until_ms // HOUR_MS
    return [
        PastWindow(provider, hour * HOUR_MS, (hour + 1) * HOUR_MS, tokens.get((provider, hour), 0))
        for provider in providers
        for hour in range(first, last)
    ]


@dataclass(frozen=True)
class Learned:
    """The forecast learned from history, and a note on what it was learned from."""

    forecast: HourOfDayForecaster
    note: str


def learn_forecast(query: Query, now_ms: int, providers: Iterable[str], days: int = FORECAST_DAYS) -> Learned:
    """Mean interactive tokens per provider per UTC hour of day over the past ``days`` days.

    With no history (nothing used yet) the forecast is zero, and the note says so."""
    since = now_ms - days * DAY_MS
    hours = [
        Hour(str(p), int(h), int(n), int(a), int(f)) for p, h, n, a, f in query(hourly_sql(since, now_ms))
    ]
    history = interactive_hours(hours, now_ms, providers)
    if not history:
        return Learned(HourOfDayForecaster(), f"no use in ClickHouse in the last {days} days: forecast 0")
    span = (history[-1].end_ms - history[0].start_ms) / HOUR_MS
    interactive = sum(h.attempts for h in hours)
    return Learned(
        HourOfDayForecaster.from_history(history),
        f"mean per UTC hour of day over {span:g} h of history ({interactive} interactive attempts)",
    )
