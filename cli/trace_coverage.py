"""``symphony trace-coverage --window 1h [--json]``: the share of decisions in the window that have a trace.

A decision has a trace when the span its event names (``decisions.trace_id`` and ``span_id``,
the request's SERVER span) was stored:

- ``clickhouse``: in ``otel_traces`` (the control plane's copy), one SQL query through the
  engine's API (analyst token) that joins the two tables;
- ``tempo``: when ``TEMPO_ENDPOINT`` is set, in Tempo, through its search API
  (``GET /api/search`` with the TraceQL ``{ resource.service.name = "symphony-proxy" }`` over the
  window in real time, at ``TEMPO_QUERY_URL``): the decisions' trace ids (from ClickHouse)
  found among the traces Tempo returns.

The window is event time (the shared clock, ``symphony.clock``), as decisions are stamped;
Tempo's search runs over the same length of real time up to now, plus a minute either side
(spans carry real time). Tempo answers at most ``limit`` traces; the report says
``truncated`` when it returned that many, as coverage may then be understated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from symphony import clock, engine_client

SERVICE = "symphony-proxy"
TRACEQL = f'{{ resource.service.name = "{SERVICE}" }}'
TEMPO_MARGIN_S = 60
TEMPO_TIMEOUT_S = 30.0
COLUMNS = ("source", "decisions", "traced", "coverage", "window_start_ms", "window_end_ms", "truncated")
HUMAN_COLUMNS = ("source", "decisions", "traced", "coverage", "window_start", "window_end", "truncated")

# Decisions in the window, and those whose server span is in otel_traces (ids as OpenTelemetry prints them).
CLICKHOUSE_SQL = """
SELECT
    count() AS decisions,
    countIf((trace_id, span_id) IN (
        SELECT TraceId, SpanId FROM otel_traces
        WHERE ServiceName = '{service}' AND SpanKind = 'Server'
    )) AS traced
FROM decisions FINAL
WHERE ts >= fromUnixTimestamp64Milli(toInt64({since})) AND ts < fromUnixTimestamp64Milli(toInt64({until}))
"""
DECISION_TRACES_SQL = """
SELECT trace_id FROM decisions FINAL
WHERE ts >= fromUnixTimestamp64Milli(toInt64({since})) AND ts < fromUnixTimestamp64Milli(toInt64({until}))
"""


class TempoError(Exception):
    """Tempo's search API refused or did not answer; the message says which."""


@dataclass(frozen=True)
class Coverage:
    source: str  # clickhouse | tempo
    decisions: int
    traced: int
    since_ms: int
    until_ms: int
    truncated: bool = False

    @property
    def share(self) -> float | None:
        """traced / decisions; None when the window holds no decision."""
        return self.traced / self.decisions if self.decisions else None

    def row(self, *, human: bool = False) -> list[Any]:
        """The report's cells: for people, coverage in percent and the window in UTC; else numbers."""
        share: Any = None if self.share is None else round(self.share, 4)
        since: Any = self.since_ms
        until: Any = self.until_ms
        if human:
            share = "-" if self.share is None else f"{100 * self.share:.1f} %"
            since, until = (clock.utc_datetime(ms).isoformat(timespec="seconds") for ms in (since, until))
        return [self.source, self.decisions, self.traced, share, since, until, self.truncated]


def from_clickhouse(engine_url: str, since_ms: int, until_ms: int) -> Coverage:
    sql = CLICKHOUSE_SQL.format(service=SERVICE, since=since_ms, until=until_ms)
    decisions, traced = engine_client.query(engine_url, sql, timeout=60).rows[0]
    return Coverage("clickhouse", int(decisions), int(traced), since_ms, until_ms)


def from_tempo(
    engine_url: str, tempo_url: str, since_ms: int, until_ms: int, now_s: int, window_s: int
) -> Coverage:
    """The decisions of the window (ClickHouse) whose trace Tempo's search finds."""
    sql = DECISION_TRACES_SQL.format(since=since_ms, until=until_ms)
    trace_ids = [str(row[0]) for row in engine_client.query(engine_url, sql, timeout=60).rows]
    limit = max(20, 2 * len(trace_ids))
    found = search_tempo(tempo_url, now_s - window_s - TEMPO_MARGIN_S, now_s + TEMPO_MARGIN_S, limit)
    traced = sum(1 for trace_id in trace_ids if trace_id and trace_id in found)
    return Coverage("tempo", len(trace_ids), traced, since_ms, until_ms, truncated=len(found) >= limit)


def search_tempo(tempo_url: str, start_s: int, end_s: int, limit: int) -> set[str]:
    """The trace ids (32 hex digits) Tempo's search finds for the proxy's service between the times."""
    params: dict[str, str | int] = {"q": TRACEQL, "start": start_s, "end": end_s, "limit": limit, "spss": 1}
    url = f"{tempo_url.rstrip('/')}/api/search"
    try:
        response = httpx.get(url, params=params, timeout=TEMPO_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise TempoError(
            f"Tempo at {url} did not answer ({type(exc).__name__}); set TEMPO_QUERY_URL"
        ) from None
    if response.status_code != 200:
        raise TempoError(f"Tempo's search at {url} answered {response.status_code}: {response.text[:300]}")
    try:
        traces = response.json().get("traces") or []
        # Tempo drops a trace id's leading zeros; OpenTelemetry prints all 32 digits.
        return {str(trace["traceID"]).lower().zfill(32) for trace in traces}
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise TempoError(f"Tempo's search at {url} answered something other than its JSON: {exc!r}") from None


def trace_coverage(
    engine_url: str, now_ms: int, window_ms: int, *, tempo_url: str = "", wall_s: int = 0
) -> list[Coverage]:
    """Coverage over ``[now_ms - window_ms, now_ms)``: ClickHouse's, then Tempo's when ``tempo_url``."""
    since_ms, until_ms = now_ms - window_ms, now_ms
    reports = [from_clickhouse(engine_url, since_ms, until_ms)]
    if tempo_url:
        reports.append(from_tempo(engine_url, tempo_url, since_ms, until_ms, wall_s, window_ms // 1000))
    return reports
