"""The learner's report, computed in the engine beside the data: ``GET /learner/metrics``.

Reads the period's logged decisions with their outcomes from ClickHouse
(``learner.logged``), the challenger the learner last published from Redis (the
uniform one when none), evaluates it per 24h window and task
(``learner.evaluation``) and judges promotion (``learner.promotion``) with the
champion policy file's criteria and SLOs: a window breached them when its own p95 or error
rate did, or when an SLO alert (``dataflows.slo``, table ``alerts``) fired in it. Time is
event time (the shared clock, so a simulated week is judged in its own days), and only
windows that have ended are judged: a window in progress holds part of a day's traffic.
Each evaluation is kept in ``learner_metrics`` (``sinks.learner_metrics``; analysts read
``v_learner_windows``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Protocol

import pyarrow as pa
import redis

from learner.evaluation import GroupReport, evaluate, evidence
from learner.logged import DECISIONS_SQL, Loaded, decisions_from_rows
from learner.promotion import WINDOW_MS, PromotionRule
from sinks.clickhouse import LEARNER_METRICS
from sinks.clickhouse_store import Rows
from sinks.learner_metrics import report_table
from symphony import clock
from symphony.catalog import Policy
from symphony.keys import CHALLENGER_KEY
from symphony.serving import ChallengerPolicy

MAX_DAYS = 90
ALERTS_SQL = """
SELECT toUnixTimestamp64Milli(started_at) FROM alerts FINAL
WHERE status = 'firing' AND started_at >= fromUnixTimestamp64Milli({since_ms:Int64})
"""
MAX_RESAMPLES = 5000


class Store(Protocol):
    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Rows: ...

    def insert_arrow(self, table: str, data: pa.Table) -> None: ...


class LearnerReport:
    def __init__(self, store: Store, client: redis.Redis, policy: Policy) -> None:
        self._store = store
        self._client = client
        self._policy = policy

    def __call__(self, days: int, resamples: int) -> dict[str, Any]:
        now = clock.shared_clock(self._client).now_ms()
        since = now - days * WINDOW_MS
        loaded = decisions_from_rows(self._store.query(DECISIONS_SQL, {"since_ms": since}).rows, self._policy)
        challenger = self._challenger()
        reports = evaluate(loaded.decisions, challenger.distribution, resamples=resamples)
        criteria = self._policy.promotion
        rule = PromotionRule(criteria.min_uplift, criteria.consecutive_windows, criteria.min_samples)
        alerts = self._alerts_by_window(since)
        breached = {start for start, slo in loaded.slo.items() if slo.breached} | set(alerts)
        ended = [r for r in reports if r.window_start_ms + WINDOW_MS <= now]
        verdict = rule.verdict(evidence(ended, breached))
        report = {
            "as_of_ms": now,
            "days": days,
            "champion_version": self._policy.version,
            "challenger_version": challenger.version,
            "decisions": len(loaded.decisions),
            "awaiting_feedback": loaded.awaiting_feedback,
            "windows": [_window(report, loaded, now, alerts) for report in reports],
            "promotion": {"candidate": verdict.promotion_candidate, "reasons": verdict.reasons},
        }
        self._store.insert_arrow(LEARNER_METRICS, report_table(report))
        return report

    def _alerts_by_window(self, since_ms: int) -> dict[int, int]:
        """SLO alerts (``dataflows.slo``) that fired in each window, by window start: a breach."""
        rows = self._store.query(ALERTS_SQL, {"since_ms": since_ms}).rows
        counts: dict[int, int] = {}
        for (started,) in rows:
            window = int(started) - int(started) % WINDOW_MS
            counts[window] = counts.get(window, 0) + 1
        return counts

    def _challenger(self) -> ChallengerPolicy:
        raw = self._client.get(CHALLENGER_KEY)
        if raw is None:
            return ChallengerPolicy.uniform()
        return ChallengerPolicy.from_json(raw)


def _window(report: GroupReport, loaded: Loaded, now_ms: int, alerts: dict[int, int]) -> dict[str, Any]:
    slo = loaded.slo.get(report.window_start_ms)
    return {
        "start_ms": report.window_start_ms,
        "ended": report.window_start_ms + WINDOW_MS <= now_ms,
        "group": report.group,
        "samples": report.samples,
        "champion": report.champion,
        **{name: asdict(estimate) for name, estimate in report.estimates.items()},
        "uplift_low": report.uplift_low,
        "slo": None if slo is None else asdict(slo),
        "slo_alerts": alerts.get(report.window_start_ms, 0),
    }
