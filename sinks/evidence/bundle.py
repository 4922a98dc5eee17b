"""Build an incident's evidence bundle from its inputs: redacted, hashed, packaged, reproducible.

``build_bundle`` is a pure function of the inputs, the redactor and the software version:
the same incident data gives the same bytes (``sinks.evidence.package``). Everything text
goes through the ``Redactor`` before it is written; the WARC's records too
(``sinks.evidence.warc_file``). The fields and rules are ``docs/evidence-bundle.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sinks.evidence.inputs import IncidentInputs
from sinks.evidence.package import PROVENANCE, canonical_json, package, sha256_hex
from sinks.evidence.provenance import statement
from sinks.evidence.status_text import readable_text
from sinks.evidence.warc_file import WARC_NAME, build_warc
from symphony.redaction import Redactor

EXCERPT_CHARS = 2000
DECISION_FIELDS = (
    "decision_id", "request_id", "app", "task", "candidates", "probabilities", "provider", "model",
    "policy", "policy_version", "propensity", "quota_remaining", "fallbacks", "fallback_statuses",
    "served_by", "trace_id", "span_id", "ts",
)  # fmt: skip
ATTEMPT_FIELDS = (
    "attempt", "provider", "model", "status", "ttfb_ms", "latency_ms", "input_tokens", "output_tokens",
    "cost_usd", "rate_limit", "fallback_from", "ts",
)  # fmt: skip


@dataclass(frozen=True)
class Bundle:
    name: str  # <bundle id>.wacz
    data: bytes
    sha256: str
    files: dict[str, str]  # path -> sha256 of every file inside


def bundle_id(incident_id: str, decision_id: str) -> str:
    """A name from what the bundle is about (safe as a file and asset name)."""
    digest = sha256_hex(f"{incident_id}\n{decision_id}".encode())[:16]
    return f"evidence-{decision_id or 'none'}-{digest}"


def _json(redactor: Redactor, data: Any) -> bytes:
    redacted = redactor.text(canonical_json(data).decode())
    json.loads(redacted)  # a mask never breaks the JSON it sits in; prove it rather than hope
    return redacted.encode()


def decision_metadata(inputs: IncidentInputs) -> dict[str, Any]:
    decision = {k: inputs.decision[k] for k in DECISION_FIELDS if k in inputs.decision}
    attempts = [{k: u[k] for k in ATTEMPT_FIELDS if k in u} for u in inputs.usage]
    return {
        "decision": decision,
        "attempts": sorted(attempts, key=lambda a: int(a["attempt"])),
        "quota_live": inputs.quota,
        "trace": {"trace_id": inputs.decision.get("trace_id", ""), "url": inputs.trace_url},
    }


def excerpts(inputs: IncidentInputs, redactor: Redactor) -> list[dict[str, Any]]:
    rows = []
    for e in sorted(inputs.exchanges, key=lambda e: (e.decision_id, e.attempt)):
        request = redactor.bytes(e.request_body).decode("utf-8", "replace")[:EXCERPT_CHARS]
        response = redactor.bytes(e.response_body).decode("utf-8", "replace")[:EXCERPT_CHARS]
        rows.append(
            {"decision_id": e.decision_id, "attempt": e.attempt, "url": e.url, "status": e.status,
             "request": request, "response": response}
        )  # fmt: skip
    return rows


def _pages(inputs: IncidentInputs) -> bytes:
    lines: list[dict[str, object]] = [
        {"format": "json-pages-1.0", "id": "pages", "title": f"Evidence {inputs.incident_id}"}
    ]
    for page in sorted(inputs.status_pages, key=lambda p: p.provider):
        lines.append({"url": page.url, "ts": page.fetched_ms, "title": f"{page.provider} status"})
    return b"".join(json.dumps(line, sort_keys=True).encode() + b"\n" for line in lines)


def build_bundle(inputs: IncidentInputs, redactor: Redactor, software: str) -> Bundle:
    decision_ms = int(inputs.decision.get("ts", inputs.at_ms))
    files: dict[str, bytes] = {
        WARC_NAME: build_warc(inputs, redactor, software),
        "evidence/decision.json": _json(redactor, decision_metadata(inputs)),
        "evidence/alert.json": _json(redactor, inputs.alert),
        "evidence/excerpts.json": _json(redactor, excerpts(inputs, redactor)),
        "pages/pages.jsonl": redactor.bytes(_pages(inputs)),
    }
    times = {path: inputs.at_ms for path in files} | {"evidence/decision.json": decision_ms}
    for page in inputs.status_pages:
        path = f"evidence/status-{page.provider}.txt"
        files[path] = redactor.text(readable_text(redactor.bytes(page.html))).encode()
        times[path] = page.fetched_ms
    decision_id = str(inputs.decision.get("decision_id", ""))
    sources = [
        {"name": "clickhouse:decisions", "decision_id": decision_id},
        {"name": "clickhouse:usage", "decision_id": decision_id},
        {"name": "redis:exchanges", "decision_id": decision_id},
    ] + [
        {"name": f"status_page:{p.provider}", "url": p.url}
        for p in sorted(inputs.status_pages, key=lambda p: p.provider)
    ]
    manifest = statement(
        files,
        times,
        incident_id=redactor.text(inputs.incident_id),
        trigger=inputs.trigger,
        at_ms=inputs.at_ms,
        software=software,
        inputs=sources,
    )
    # names, digests and times only (the names redacted above): redacting it whole could break a digest
    files[PROVENANCE] = canonical_json(
        manifest
    )  # names, digests and times only: redacting could break a digest
    name = bundle_id(inputs.incident_id, decision_id)
    data = package(files, inputs.at_ms, f"Evidence {inputs.incident_id}", software)
    return Bundle(
        f"{name}.wacz", data, sha256_hex(data), {p: sha256_hex(b) for p, b in sorted(files.items())}
    )
