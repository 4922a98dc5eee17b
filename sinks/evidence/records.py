"""Where a bundle goes: a file under ``VAR_DIR/evidence/`` and a row in ClickHouse ``evidence_bundles``.

The row names the bundle (id, incident, decision, what triggered it), its file, its sha256 and
every inner file's, and the ticket links; recording the same bundle again with its links
replaces the row (ReplacingMergeTree on ``recorded_at``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from sinks.clickhouse import EVIDENCE_BUNDLES, SCHEMAS
from sinks.evidence.bundle import Bundle
from sinks.evidence.inputs import IncidentInputs


class ArrowWriter(Protocol):
    def insert_arrow(self, table: str, data: pa.Table) -> None: ...


def evidence_dir(var_dir: Path) -> Path:
    return var_dir / "evidence"


def write_bundle(bundle: Bundle, var_dir: Path) -> Path:
    """The bundle's file (written whole, then renamed: a reader never sees half a bundle)."""
    folder = evidence_dir(var_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / bundle.name
    partial = path.with_suffix(".partial")
    partial.write_bytes(bundle.data)
    partial.replace(path)
    return path


def bundle_row(
    bundle: Bundle, inputs: IncidentInputs, path: Path, links: Sequence[str], recorded_ms: int
) -> pa.Table:
    row = {
        "bundle_id": bundle.name.removesuffix(".wacz"),
        "incident_id": inputs.incident_id,
        "decision_id": str(inputs.decision.get("decision_id", "")),
        "trigger": inputs.trigger,
        "at": inputs.at_ms,
        "path": str(path),
        "sha256": bundle.sha256,
        "bytes": len(bundle.data),
        "file_hashes": list(bundle.files.items()),
        "ticket_links": list(links),
        "recorded_at": recorded_ms,
    }
    return pa.Table.from_pylist([row], schema=SCHEMAS[EVIDENCE_BUNDLES])


def record_bundle(
    writer: ArrowWriter,
    bundle: Bundle,
    inputs: IncidentInputs,
    path: Path,
    links: Sequence[str],
    recorded_ms: int,
) -> None:
    writer.insert_arrow(EVIDENCE_BUNDLES, bundle_row(bundle, inputs, path, links, recorded_ms))
