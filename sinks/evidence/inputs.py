"""What an evidence bundle is built from: one incident's decision, attempts, exchanges and status pages.

Everything here is plain data, gathered by ``sinks.evidence.capture`` (ClickHouse, Redis, the
status pages) or given by a test; the builder turns the same inputs into the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Exchange:
    """One provider HTTP exchange of an attempt, as the proxy's exchange ring kept it."""

    decision_id: str
    attempt: int
    at_ms: int
    method: str
    url: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes


@dataclass(frozen=True)
class StatusPage:
    provider: str
    url: str
    fetched_ms: int
    status: int
    html: bytes


@dataclass(frozen=True)
class IncidentInputs:
    incident_id: str  # the alert's fingerprint (its alert_id), or ``decision:<id>`` on demand
    at_ms: int  # the incident's time: every timestamp in the bundle is derived from it, never the wall clock
    decision: dict[str, Any]  # the ``decisions`` row
    usage: list[dict[str, Any]]  # the ``usage`` rows, one per attempt, in attempt order
    exchanges: list[Exchange] = field(default_factory=list)
    status_pages: list[StatusPage] = field(default_factory=list)
    alert: dict[str, Any] | None = None
    trace_url: str = ""
    quota: dict[str, Any] = field(default_factory=dict)  # live quota state read at capture
    trigger: str = "on_demand"  # slo_alert | chaos_scenario | on_demand
