"""What the operator console shows live: the quota matrix, each provider's health and the policy split.

One snapshot (``ConsoleFeed.snapshot``) per tick of the console's server-sent events
(``GET /console/events``):

- ``now_ms``, ``sent_ms`` and ``speed``: the shared clock when the matrix was read, when the
  snapshot was sent, and its speed, from which the browser runs the ETA clocks on between snapshots;
- ``matrix``: every cap by window (``symphony.quotas.matrix``, the rows of ``just quotas-matrix``)
  at the shared clock's time, so the ETA clocks follow the simulated clock when it runs;
- ``health``: per provider, from its attempts in ClickHouse over the SLO window of event time
  (``SLO_WINDOW_S``) ending now: attempts, error rate (5xx, timeouts and errors over all attempts
  but 429s, as the SLO dataflow counts them), p95 latency of the answered, and a state judged by
  the SLO thresholds: ``idle`` (no attempt), ``unhealthy`` (error rate at or over
  ``SLO_ERROR_RATE``), ``slow`` (p95 over ``SLO_P95_MS``), else ``healthy``; the rates need
  ``SLO_MIN_ATTEMPTS`` attempts to judge;
- ``split``: the share of decisions each policy (champion, challenger, override) served in the
  same window;
- ``jobs``: the scheduler's queued and running jobs (at most ``MAX_JOBS``, soonest deadline first):
  state, the plan's provider and send time, and the deadline.

- ``breakers``: per provider, the proxies' circuit breakers as the replicas publish them to Redis
  (``symphony.breakers``: each live replica's state, ``open`` when any has it open, else ``half-open``
  when any has, else ``closed``; ``unknown`` when no live replica reports it), beside ``health``,
  which is the control plane's own judgement of the attempts in ClickHouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from sinks.clickhouse_store import ClickHouseStore
from symphony import breakers, clock
from symphony.alerts import SloThresholds
from symphony.keys import JOBS_QUEUE, JOBS_RUNNING, job_key
from symphony.quotas import QuotaPolicy
from symphony.quotas.matrix import COLUMNS, quota_matrix

MAX_JOBS = 100
JOB_FIELDS = ("app", "state", "planned_provider", "planned_ms", "deadline_ms", "tokens")

HEALTH_SQL = """
SELECT provider,
       countIf(status != '429') AS attempts,
       countIf(status IN ('5xx', 'timeout', 'error')) AS failures,
       quantileExactIf(0.95)(latency_ms, status = 'ok') AS p95_ms,
       countIf(status = 'ok') AS answered
FROM usage
WHERE ts > fromUnixTimestamp64Milli(toInt64({start})) AND ts <= fromUnixTimestamp64Milli(toInt64({end}))
GROUP BY provider
"""

SPLIT_SQL = """
SELECT policy, count() AS decisions
FROM decisions
WHERE ts > fromUnixTimestamp64Milli(toInt64({start})) AND ts <= fromUnixTimestamp64Milli(toInt64({end}))
GROUP BY policy
"""


@dataclass(frozen=True)
class ProviderHealth:
    provider: str
    attempts: int
    error_rate: float | None
    p95_ms: float | None
    state: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "attempts": self.attempts,
            "error_rate": self.error_rate,
            "p95_ms": self.p95_ms,
            "state": self.state,
        }


def judge(attempts: int, failures: int, answered: int, p95_ms: float, slo: SloThresholds) -> ProviderHealth:
    """A provider's state from its window's counts (provider left blank for the caller to fill)."""
    error_rate = failures / attempts if attempts else None
    p95 = p95_ms if answered else None
    if attempts == 0:
        state = "idle"
    elif attempts >= slo.min_attempts and error_rate is not None and error_rate >= slo.error_rate:
        state = "unhealthy"
    elif answered >= slo.min_attempts and p95 is not None and p95 > slo.p95_latency_ms:
        state = "slow"
    else:
        state = "healthy"
    return ProviderHealth("", attempts, error_rate, p95, state)


class ConsoleFeed:
    """Builds the console's snapshots from Redis (quotas, clock) and ClickHouse (attempts, decisions)."""

    def __init__(
        self, store: ClickHouseStore, client: redis.Redis, policy: QuotaPolicy, slo: SloThresholds
    ) -> None:
        self._store = store
        self._client = client
        self._policy = policy
        self._slo = slo

    def snapshot(self) -> dict[str, Any]:
        shared = clock.shared_clock(self._client)
        now = shared.now_ms()
        rows = quota_matrix(self._client, self._policy, now)
        window = {"start": now - self._slo.window_ms, "end": now}
        health, split, jobs = self._health(window), self._split(window), self._jobs()
        return {
            "now_ms": now,
            # Read last, so the browser's clocks run on from when the snapshot left, not from when its
            # queries began (at a fast clock, a slow query would show as a jump).
            "sent_ms": shared.now_ms(),
            "speed": shared.speed,
            "window_ms": self._slo.window_ms,
            "providers": list(self._policy.providers),
            "matrix": [dict(zip(COLUMNS, row.cells(human=False), strict=True)) for row in rows],
            "health": [h.as_dict() for h in health],
            "breakers": breakers.aggregate(breakers.read(self._client), self._policy.providers),
            "split": split,
            "jobs": jobs,
        }

    def _health(self, window: dict[str, int]) -> list[ProviderHealth]:
        found = {row[0]: row[1:] for row in self._store.query_read_only(HEALTH_SQL.format(**window)).rows}
        health = []
        for provider in self._policy.providers:
            attempts, failures, p95, answered = found.get(provider, (0, 0, 0.0, 0))
            judged = judge(int(attempts), int(failures), int(answered), float(p95), self._slo)
            health.append(
                ProviderHealth(provider, judged.attempts, judged.error_rate, judged.p95_ms, judged.state)
            )
        return health

    def _split(self, window: dict[str, int]) -> dict[str, float]:
        counts = {str(p): int(n) for p, n in self._store.query_read_only(SPLIT_SQL.format(**window)).rows}
        total = sum(counts.values())
        return {policy: n / total for policy, n in sorted(counts.items())} if total else {}

    def _jobs(self) -> list[dict[str, Any]]:
        queued = [bytes(i).decode() for i in self._client.zrange(JOBS_QUEUE, 0, MAX_JOBS - 1)]  # type: ignore[arg-type]
        running = sorted(i.decode() for i in self._client.smembers(JOBS_RUNNING))  # type: ignore[union-attr]
        ids = (queued + running)[:MAX_JOBS]
        pipe = self._client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(job_key(job_id), JOB_FIELDS)
        jobs = []
        for job_id, values in zip(ids, pipe.execute(), strict=True):
            fields = {
                name: v.decode() if v is not None else None
                for name, v in zip(JOB_FIELDS, values, strict=True)
            }
            if fields["state"] is not None:  # ended and expired between the two reads
                jobs.append({"id": job_id, **fields})
        return jobs
