"""Check an evidence bundle: every file re-hashed against datapackage.json and the provenance
statement, datapackage.json against its digest, and every WARC record against its digests.

``verify_bundle`` returns the problems found, the first one first; an empty list means the
bundle is what was written. Names a file or a WARC record in each problem.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from warcio.archiveiterator import ArchiveIterator

from sinks.evidence.package import DATAPACKAGE, DATAPACKAGE_DIGEST, PROVENANCE, sha256_hex
from sinks.evidence.provenance import STATEMENT_TYPE


class BundleError(ValueError):
    """The file is no readable bundle at all."""


def _read(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as archive:
            return {info.filename: archive.read(info) for info in archive.infolist()}
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{path}: not a readable zip ({exc})") from None


def _json(files: dict[str, bytes], name: str) -> Any:
    if name not in files:
        raise BundleError(f"{name} is missing")
    try:
        return json.loads(files[name])
    except ValueError as exc:
        raise BundleError(f"{name} is not JSON ({exc})") from None


def _package_problems(files: dict[str, bytes]) -> list[str]:
    problems = []
    digest = _json(files, DATAPACKAGE_DIGEST)
    if DATAPACKAGE in files and digest.get("hash") != f"sha256:{sha256_hex(files[DATAPACKAGE])}":
        problems.append(f"{DATAPACKAGE}: its sha256 differs from {DATAPACKAGE_DIGEST}")
    try:
        listed = {r["path"]: r for r in _json(files, DATAPACKAGE).get("resources", [])}
    except BundleError as exc:
        return [*problems, str(exc)]
    for path in sorted(set(files) - {DATAPACKAGE, DATAPACKAGE_DIGEST}):
        resource = listed.get(path)
        if resource is None:
            problems.append(f"{path}: not listed in {DATAPACKAGE}")
        elif resource.get("hash") != f"sha256:{sha256_hex(files[path])}":
            problems.append(f"{path}: sha256 differs from {DATAPACKAGE}")
        elif resource.get("bytes") != len(files[path]):
            problems.append(f"{path}: size differs from {DATAPACKAGE}")
    problems += [f"{path}: listed in {DATAPACKAGE} but missing" for path in sorted(set(listed) - set(files))]
    return problems


def _provenance_problems(files: dict[str, bytes]) -> list[str]:
    manifest = _json(files, PROVENANCE)
    if manifest.get("_type") != STATEMENT_TYPE:
        return [f"{PROVENANCE}: not an in-toto Statement v1"]
    problems = []
    named = {s["name"]: s["digest"].get("sha256") for s in manifest.get("subject", [])}
    expected = set(files) - {DATAPACKAGE, DATAPACKAGE_DIGEST, PROVENANCE}
    for path in sorted(expected):
        if named.get(path) != sha256_hex(files[path]):
            problems.append(f"{path}: sha256 differs from {PROVENANCE}")
    problems += [f"{path}: named in {PROVENANCE} but missing" for path in sorted(set(named) - expected)]
    return problems


def _digest(algorithm_and_value: str, data: bytes) -> bool:
    algorithm, _, value = algorithm_and_value.partition(":")
    if algorithm != "sha256":
        return False
    return base64.b32encode(hashlib.sha256(data).digest()).decode() == value


def warc_problems(name: str, data: bytes) -> list[str]:
    """Every record's block and payload digests recomputed (sha256 only: a weaker digest is a problem)."""
    problems = []
    try:
        for record in ArchiveIterator(io.BytesIO(data), check_digests=False, ensure_http_headers=False):
            record_id = record.rec_headers.get_header("WARC-Record-ID")
            head = record.http_headers.to_bytes() if record.http_headers else b""
            payload = record.content_stream().read()
            block_digest = record.rec_headers.get_header("WARC-Block-Digest") or ""
            payload_digest = record.rec_headers.get_header("WARC-Payload-Digest")
            if not _digest(block_digest, head + payload):
                problems.append(f"{name}: record {record_id} block digest does not match")
            if payload_digest is not None and not _digest(payload_digest, payload):
                problems.append(f"{name}: record {record_id} payload digest does not match")
    except Exception as exc:  # warcio raises many kinds on a damaged file
        problems.append(f"{name}: unreadable WARC ({type(exc).__name__}: {exc})")
    return problems


def verify_bundle(path: Path) -> list[str]:
    """The problems found, the first mismatch first; ``BundleError`` if ``path`` is no zip at all."""
    files = _read(path)
    problems: list[str] = []
    for check in (_package_problems, _provenance_problems):
        try:
            problems += check(files)
        except BundleError as exc:  # an unreadable part: the problems before it stay first
            problems.append(str(exc))
    for name in sorted(n for n in files if n.startswith("archive/") and n.endswith(".warc")):
        problems += warc_problems(name, files[name])
    return problems
