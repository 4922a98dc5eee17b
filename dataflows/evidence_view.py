"""``GET /console/evidence/{bundle_id}``: an alert's evidence bundle, as an operator fetches it.

The Alerts view links each alert to its bundle (``evidence_bundles.incident_id`` is the
alert's ``alert_id``). Following the link downloads the bundle's file (a WACZ, as an
attachment) when this host holds it under ``VAR_DIR/evidence/`` and its sha256 is the one
ClickHouse recorded; otherwise it answers the recorded row as JSON (``file`` says why there
is no download: captured on another host, or the file no longer matches its hash), so the
operator still sees the incident, its decision, the hashes and the ticket links.

The id must read as ``sinks.evidence.bundle.bundle_id`` writes it (``evidence-<decision
id>-<16 hex digits>``) or it is a 400: the file's name is built from the checked id, never
from the path recorded in ClickHouse, so no request reaches outside that folder. An id
ClickHouse does not know is a 404. Analysts may read it (``dataflows.api_auth``); the row is
read in their sandbox like ``/query``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sinks.clickhouse_store import ClickHouseStore
from sinks.evidence.records import evidence_dir

BUNDLE_ID = re.compile(r"evidence-[0-9A-Za-z_\-]{1,64}-[0-9a-f]{16}")
MEDIA_TYPE = "application/wacz"

BUNDLE_SQL = """
SELECT bundle_id, incident_id, decision_id, trigger, toUnixTimestamp64Milli(at) AS at_ms, sha256, bytes,
       ticket_links, toUnixTimestamp64Milli(recorded_at) AS recorded_ms
FROM evidence_bundles FINAL WHERE bundle_id = '{bundle_id}' ORDER BY recorded_at DESC LIMIT 1
"""


class BundleNotFound(LookupError):
    pass


@dataclass(frozen=True)
class FoundBundle:
    row: dict[str, Any]  # the bundle's row in evidence_bundles, with ``file``: why no download, or null
    path: Path | None  # the file to send: on this host, and its sha256 the recorded one


def checked(bundle_id: str) -> str:
    """The id as the bundle's name has it, or ``ValueError`` saying what it is not."""
    if not BUNDLE_ID.fullmatch(bundle_id):
        raise ValueError(
            f"an evidence bundle id reads evidence-<decision id>-<16 hex digits>, not {bundle_id[:80]!r}"
        )
    return bundle_id


def find_bundle(store: ClickHouseStore, var_dir: Path, bundle_id: str) -> FoundBundle:
    """Bundle ``bundle_id`` (already ``checked``): its row, and its file when this host holds it intact."""
    result = store.query_read_only(BUNDLE_SQL.format(bundle_id=bundle_id))
    if not result.rows:
        raise BundleNotFound(f"no evidence bundle {bundle_id} in ClickHouse")
    row = dict(zip(result.columns, result.rows[0], strict=True))
    path = evidence_dir(var_dir) / f"{bundle_id}.wacz"
    if not path.is_file():
        row["file"] = "not on this host: the bundle was written where it was captured"
        return FoundBundle(row, None)
    if _sha256(path) != row["sha256"]:
        row["file"] = f"{path.name} on this host does not match the recorded sha256: not sent"
        return FoundBundle(row, None)
    row["file"] = None
    return FoundBundle(row, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
