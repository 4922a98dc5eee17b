"""``GET /traces/{trace_id}``: one trace from ClickHouse, with the decision it served.

The link an SLO alert carries by default (``Settings.resolved_trace_url_template``) lands here:
the trace's spans from ``otel_traces`` (start order; ids, kind, name, duration, status,
attributes, parent) and the
``decision`` whose ``trace_id`` it is (provider, model, policy, propensity, quota snapshot), so
one click goes from the alert to the request, its decision and its quota state. Analysts may
read it (``dataflows.api_auth``); it runs in their sandbox like ``/query``. A trace id that is not
32 hex digits is a 400; one with neither spans nor a decision a 404.
"""

from __future__ import annotations

import re
from typing import Any

from sinks.clickhouse_store import ClickHouseStore

TRACES_PREFIX = "/traces/"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_SPANS = 1000

SPANS_SQL = """
SELECT toUnixTimestamp64Nano(Timestamp) AS start_ns, SpanId AS span_id, ParentSpanId AS parent_span_id,
       SpanName AS name, SpanKind AS kind, ServiceName AS service, Duration AS duration_ns,
       StatusCode AS status, StatusMessage AS status_message, SpanAttributes AS attributes
FROM otel_traces FINAL WHERE TraceId = '{trace_id}' ORDER BY Timestamp LIMIT {limit}
"""
DECISION_SQL = """
SELECT decision_id, toUnixTimestamp64Milli(ts) AS ts_ms, app, task, provider, model, policy, policy_version,
       propensity, candidates, probabilities, overrides, quota_remaining, fallbacks, fallback_statuses,
       served_by, span_id
FROM decisions FINAL WHERE trace_id = '{trace_id}' LIMIT 1
"""


class TraceNotFound(LookupError):
    pass


def normalized(trace_id: str) -> str:
    """The id in OpenTelemetry's hex (32 lowercase digits), or ``ValueError`` saying what it is not."""
    value = trace_id.strip().lower()
    if not _TRACE_ID.match(value):
        raise ValueError(f"a trace id is 32 hexadecimal digits, not {trace_id[:64]!r}")
    return value


def read_trace(store: ClickHouseStore, trace_id: str) -> dict[str, Any]:
    """The trace's spans and its decision; ``TraceNotFound`` when ClickHouse holds neither."""
    spans = store.query_read_only(SPANS_SQL.format(trace_id=trace_id, limit=MAX_SPANS))
    decision = store.query_read_only(DECISION_SQL.format(trace_id=trace_id))
    if not spans.rows and not decision.rows:
        raise TraceNotFound(f"no span and no decision with trace id {trace_id}")
    return {
        "trace_id": trace_id,
        "decision": dict(zip(decision.columns, decision.rows[0], strict=True)) if decision.rows else None,
        "spans": [dict(zip(spans.columns, row, strict=True)) for row in spans.rows],
    }
