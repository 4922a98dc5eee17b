"""The bundle's provenance: an in-toto Statement v1 naming every file by its SHA-256.

The predicate (``PREDICATE_TYPE``) says what produced the bundle (Symphony and its
version), from which inputs (the ClickHouse rows and Redis keys, the status page URLs,
the proxy's exchange ring), for which incident, when (the incident's time, and per file
the time its content describes).
"""

from __future__ import annotations

from typing import Any

from sinks.evidence.package import iso, sha256_hex

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://symphony.dev/evidence-bundle/v1"


def statement(
    files: dict[str, bytes],
    times_ms: dict[str, int],
    *,
    incident_id: str,
    trigger: str,
    at_ms: int,
    software: str,
    inputs: list[dict[str, str]],
) -> dict[str, Any]:
    paths = sorted(files)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": path, "digest": {"sha256": sha256_hex(files[path])}} for path in paths],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "producer": {"name": "symphony", "version": software},
            "incident": incident_id,
            "trigger": trigger,
            "capturedAt": iso(at_ms),
            "inputs": inputs,
            "files": [
                {"name": path, "sha256": sha256_hex(files[path]), "timestamp": iso(times_ms[path])}
                for path in paths
            ],
            "redaction": "docs/evidence-bundle.md",
        },
    }
