"""Gather one incident's inputs: the decision and its attempts (ClickHouse), the live quota
state (Redis), each involved provider's status page (fetched now), and the alert.

Where the exchanges come from: with the live flag ``evidence_bundles`` on, the proxy keeps
its failed and slow attempts' exchanges, redacted, in a bounded ring in Redis
(``proxy.attempts.exchange_ring``); a decision's are read from it here. An attempt whose
exchange is not there (it answered in time, the flag was off, or it has left the ring) is
in the bundle as what was recorded of it: its usage event (status, headers observed,
tokens, cost, timings). See docs/evidence-bundle.md.

ClickHouse is read through a ``RowReader``: the engine's own store where the engine
captures (an SLO alert), the engine's query API elsewhere (the CLI), so chDB keeps one owner.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import redis

from sinks.evidence.inputs import Exchange, IncidentInputs, StatusPage
from symphony import keys
from symphony.catalog import Catalog
from symphony.settings import Settings

DECISION_ID = re.compile(r"[0-9A-Za-z_\-]{1,64}")
STATUS_TIMEOUT_S = 5.0
# columns -> rows; raises on a refused query.
RowReader = Callable[[str], tuple[list[str], list[list[Any]]]]


class CaptureError(Exception):
    """The incident cannot be captured; the message says what is missing and what to do."""


def checked_decision_id(decision_id: str) -> str:
    if not DECISION_ID.fullmatch(decision_id):
        raise CaptureError(f"decision id {decision_id!r} is not one (1 to 64 letters, digits, '-' or '_')")
    return decision_id


def _dicts(read: RowReader, sql: str) -> list[dict[str, Any]]:
    columns, rows = read(sql)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def read_decision(read: RowReader, decision_id: str) -> dict[str, Any]:
    # the id is checked above: letters, digits, '-' and '_' only, so it cannot leave its quotes
    sql = (
        "SELECT decision_id, request_id, app, task, candidates, probabilities, provider, model, policy, "
        "policy_version, propensity, quota_remaining, trace_id, span_id, toUnixTimestamp64Milli(ts) AS ts "
        f"FROM decisions FINAL WHERE decision_id = '{checked_decision_id(decision_id)}' ORDER BY ts LIMIT 1"
    )
    found = _dicts(read, sql)
    if not found:
        raise CaptureError(f"no decision {decision_id} in ClickHouse (has the engine ingested it yet?)")
    return found[0]


def read_usage(read: RowReader, decision_id: str) -> list[dict[str, Any]]:
    sql = (
        "SELECT decision_id, attempt, provider, model, status, ttfb_ms, latency_ms, input_tokens, "
        "output_tokens, cost_usd, rate_limit, fallback_from, toUnixTimestamp64Milli(ts) AS ts "
        f"FROM usage FINAL WHERE decision_id = '{checked_decision_id(decision_id)}' ORDER BY attempt"
    )
    return _dicts(read, sql)


def read_quota(client: redis.Redis, providers: Iterable[str]) -> dict[str, Any]:
    """Every published ETA of the providers involved, as Redis holds it now."""
    state: dict[str, Any] = {}
    for provider in sorted(set(providers)):
        for key in sorted(client.scan_iter(match=keys.eta_keys_pattern(provider), count=100)):
            name = key.decode() if isinstance(key, bytes) else str(key)
            raw = client.hgetall(name)
            state[name] = {_text(k): _text(v) for k, v in sorted(raw.items())}
    return state


def read_exchanges(client: redis.Redis, decision_id: str) -> list[Exchange]:
    """The decision's exchanges the proxy's ring still holds (an entry that cannot be read is skipped)."""
    found = []
    for raw in client.lrange(keys.EXCHANGES_KEY, 0, -1):
        try:
            entry = json.loads(raw)
            if entry.get("decision_id") != decision_id:
                continue
            found.append(
                Exchange(
                    decision_id=decision_id,
                    attempt=int(entry["attempt"]),
                    at_ms=int(entry["at_ms"]),
                    method=str(entry["method"]),
                    url=str(entry["url"]),
                    request_headers={str(k): str(v) for k, v in entry["request_headers"].items()},
                    request_body=str(entry["request_body"]).encode(),
                    status=int(entry["status"]),
                    response_headers={str(k): str(v) for k, v in entry["response_headers"].items()},
                    response_body=str(entry["response_body"]).encode(),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    # one per attempt: a retried push can keep one twice
    return list({e.attempt: e for e in sorted(found, key=lambda e: e.at_ms)}.values())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def status_url(catalog: Catalog, settings: Settings, provider: str) -> str:
    spec = catalog.providers[provider]
    if settings.simulated(provider):
        return spec.simulated_status_url(settings.resolved_sim_url, provider)
    return spec.status_url


def fetch_status_page(url: str, at_ms: int, provider: str) -> StatusPage:
    """The page as it is now; a page that cannot be fetched is recorded as such, not skipped."""
    try:
        response = httpx.get(url, timeout=STATUS_TIMEOUT_S, follow_redirects=True)
        return StatusPage(provider, url, at_ms, response.status_code, response.content)
    except httpx.HTTPError as exc:
        note = f"<html><body><p>status page not fetched: {type(exc).__name__}</p></body></html>"
        return StatusPage(provider, url, at_ms, 0, note.encode())


@dataclass(frozen=True)
class Sources:
    read: RowReader
    redis: redis.Redis | None
    catalog: Catalog
    settings: Settings


def gather(
    sources: Sources,
    decision_id: str,
    *,
    incident_id: str = "",
    at_ms: int | None = None,
    alert: dict[str, Any] | None = None,
    trigger: str = "on_demand",
) -> IncidentInputs:
    """The inputs of one incident, around one decision (the alert's exemplar, or the one asked for)."""
    decision = read_decision(sources.read, decision_id)
    usage = read_usage(sources.read, decision_id)
    providers = sorted({str(u["provider"]) for u in usage} | {str(decision["provider"])})
    providers = [p for p in providers if p in sources.catalog.providers]
    moment = int(decision["ts"]) if at_ms is None else at_ms
    pages = [
        fetch_status_page(status_url(sources.catalog, sources.settings, p), moment, p)
        for p in providers
        if status_url(sources.catalog, sources.settings, p)
    ]
    quota = read_quota(sources.redis, providers) if sources.redis is not None else {}
    exchanges = read_exchanges(sources.redis, decision_id) if sources.redis is not None else []
    trace_id = str(decision.get("trace_id", ""))
    template = sources.settings.resolved_trace_url_template
    return IncidentInputs(
        incident_id=incident_id or f"decision:{decision_id}",
        at_ms=moment,
        decision=_plain(decision),
        usage=[_plain(u) for u in usage],
        exchanges=exchanges,
        status_pages=pages,
        alert=alert,
        trace_url=template.replace("{trace_id}", trace_id) if trace_id else "",
        quota=quota,
        trigger=trigger,
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """JSON values only (what ClickHouse hands back varies by client: tuples, dicts, decimals)."""
    plain: dict[str, Any] = json.loads(json.dumps(row, default=str))
    return plain
