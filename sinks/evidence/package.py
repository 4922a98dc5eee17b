"""An evidence bundle as one zip in the WACZ layout, byte-reproducible for the same inputs.

Layout (every path one folder deep, as WACZ validators read them)::

    archive/exchanges.warc          WARC 1.1: exchanges, attempts, status pages (sha256 digests)
    evidence/decision.json          decision metadata: candidates, probabilities, quota, attempts
    evidence/alert.json             the alert that triggered the bundle (null on demand)
    evidence/excerpts.json          redacted excerpts of each request and response
    evidence/status-<provider>.txt  each status page's readable text
    pages/pages.jsonl               the WACZ page list (the status pages)
    provenance/statement.intoto.json  in-toto Statement v1 naming every file above by digest
    datapackage.json                WACZ 1.1.1: every file above with its sha256 and size
    datapackage-digest.json         the sha256 of datapackage.json

Reproducible: entries sorted by name, stored (WACZ wants the WARC uncompressed inside the
zip), each entry's date the incident's time, fixed permissions; JSON with sorted keys; no
wall-clock time anywhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

from symphony import clock

WACZ_VERSION = "1.1.1"
DATAPACKAGE = "datapackage.json"
DATAPACKAGE_DIGEST = "datapackage-digest.json"
PROVENANCE = "provenance/statement.intoto.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(data: Any) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def iso(ms: int) -> str:
    return clock.utc_datetime(ms).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def datapackage(files: dict[str, bytes], at_ms: int, title: str, software: str) -> dict[str, Any]:
    resources = [
        {
            "name": path.replace("/", "-"),
            "path": path,
            "hash": f"sha256:{sha256_hex(data)}",
            "bytes": len(data),
        }
        for path, data in sorted(files.items())
    ]
    return {
        "profile": "data-package",
        "wacz_version": WACZ_VERSION,
        "title": title,
        "created": iso(at_ms),
        "modified": iso(at_ms),
        "software": software,
        "resources": resources,
    }


def zip_bytes(files: dict[str, bytes], at_ms: int) -> bytes:
    moment = clock.utc_datetime(at_ms)
    date_time = max(
        ZIP_EPOCH, (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, so the permissions below are read as such
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[path])
    return out.getvalue()


def package(files: dict[str, bytes], at_ms: int, title: str, software: str) -> bytes:
    """The zip of ``files`` with datapackage.json and its digest added."""
    described = canonical_json(datapackage(files, at_ms, title, software))
    digest = canonical_json({"path": DATAPACKAGE, "hash": f"sha256:{sha256_hex(described)}"})
    return zip_bytes({**files, DATAPACKAGE: described, DATAPACKAGE_DIGEST: digest}, at_ms)
