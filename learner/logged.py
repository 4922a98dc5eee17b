"""Logged decisions with their outcomes, read from ClickHouse, as the evaluation takes them.

One row per decision of the period: what the proxy logged (task, candidates,
probabilities, the chosen arm, the serving policy), whether any attempt answered,
the total cost and latency over its attempts, and the app's feedback score if
one came (the latest per decision). The utility comes from the policy file's
weights for the decision's task (``learner.utility``); a served decision without
feedback has none yet and is counted, not evaluated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from learner.evaluation import LoggedDecision
from learner.promotion import WINDOW_MS
from learner.utility import Outcome, utility
from symphony.catalog import Policy, PromotionCriteria
from symphony.serving import context_of

# {since_ms:Int64} bounds the event time; joins are by decision_id, never by arrival.
DECISIONS_SQL = """
SELECT
    toUnixTimestamp64Milli(d.ts) AS ts_ms,
    d.task,
    d.candidates,
    d.probabilities,
    concat(d.provider, '/', d.model) AS chosen,
    d.policy,
    d.served_by != '' AS served,
    u.cost_usd,
    u.latency_ms,
    f.has_score,
    f.score,
    d.features
FROM (SELECT * FROM decisions FINAL WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64})) AS d
LEFT JOIN (
    SELECT decision_id, sum(cost_usd) AS cost_usd, sum(latency_ms) AS latency_ms
    FROM usage FINAL GROUP BY decision_id
) AS u ON u.decision_id = d.decision_id
LEFT JOIN (
    SELECT decision_id, 1 AS has_score, argMax(score, ts) AS score
    FROM feedback FINAL GROUP BY decision_id
) AS f ON f.decision_id = d.decision_id
ORDER BY d.ts
"""


@dataclass(frozen=True)
class WindowSlo:
    p95_ms: float  # request latency (every attempt) of the served decisions
    error_rate: float  # the share of decisions no attempt answered
    breached: bool


@dataclass(frozen=True)
class Loaded:
    decisions: list[LoggedDecision]
    awaiting_feedback: int  # served decisions whose score has not come (yet)
    slo: dict[int, WindowSlo]  # by window start


def slo_by_window(rows: Sequence[Sequence[Any]], criteria: PromotionCriteria) -> dict[int, WindowSlo]:
    latencies: dict[int, list[float]] = defaultdict(list)
    failures: dict[int, int] = defaultdict(int)
    totals: dict[int, int] = defaultdict(int)
    for row in rows:
        ts, served, latency = int(row[0]), bool(row[6]), float(row[8] or 0.0)
        window = ts - ts % WINDOW_MS
        totals[window] += 1
        if served:
            latencies[window].append(latency)
        else:
            failures[window] += 1
    slo = {}
    for window, total in totals.items():
        p95 = float(np.percentile(latencies[window], 95)) if latencies[window] else 0.0
        error_rate = failures[window] / total
        breached = p95 > criteria.slo_p95_ms or error_rate > criteria.slo_error_rate
        slo[window] = WindowSlo(p95, error_rate, breached)
    return slo


def decisions_from_rows(rows: Sequence[Sequence[Any]], policy: Policy) -> Loaded:
    decisions, waiting = [], 0
    for row in rows:
        (
            ts,
            task,
            candidates,
            probabilities,
            chosen,
            kind,
            served,
            cost,
            latency,
            has_score,
            score,
            features,
        ) = row
        outcome = Outcome(
            served=bool(served),
            score=float(score) if has_score else None,
            cost_usd=float(cost or 0.0),
            latency_ms=float(latency or 0.0),
        )
        value = utility(policy.utility_weights(str(task)), outcome)
        if value is None:
            waiting += 1
            continue
        if str(chosen) not in candidates:  # a pinned arm outside the candidates: no policy chose it
            continue
        decisions.append(
            LoggedDecision(
                ts=int(ts),
                task=str(task),
                candidates=tuple(str(c) for c in candidates),
                probabilities=tuple(float(p) for p in probabilities),
                chosen=str(chosen),
                policy=str(kind),
                utility=value,
                context=context_of(features or {}),
            )
        )
    return Loaded(decisions, waiting, slo_by_window(rows, policy.promotion))
