import base64
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sinks.evidence.bundle import build_bundle
from sinks.evidence.verify import verify_bundle
from tests.evidence_inputs import DECISION_ID, corpus_redactor, planted_inputs
from tests.redaction_corpus import app_key, everything

BIN = Path(sys.executable).parent
SOFTWARE = "symphony 3.0.0"


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = build_bundle(planted_inputs(), corpus_redactor(), SOFTWARE)
    path = tmp_path_factory.mktemp("evidence") / bundle.name
    path.write_bytes(bundle.data)
    return path


def files_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_two_captures_are_byte_identical():
    first = build_bundle(planted_inputs(), corpus_redactor(), SOFTWARE)
    second = build_bundle(planted_inputs(), corpus_redactor(), SOFTWARE)
    assert first.data == second.data
    assert first.sha256 == hashlib.sha256(second.data).hexdigest()


def test_nothing_of_the_corpus_in_any_file(bundle_path):
    files = files_of(bundle_path)
    raw = bundle_path.read_bytes()
    _, prefix = app_key()
    for value in everything():
        for name, data in files.items():
            assert value.encode() not in data, f"{value[:16]}… in {name}"
        assert value.encode() not in raw
    # what the redaction keeps: the app key's public prefix, the masks, the facts
    warc = files["archive/exchanges.warc"].decode()
    assert prefix in warc and "[REDACTED:header]" in warc and "[REDACTED:card]" in warc


def test_layout_and_metadata(bundle_path):
    files = files_of(bundle_path)
    assert sorted(files) == [
        "archive/exchanges.warc",
        "datapackage-digest.json",
        "datapackage.json",
        "evidence/alert.json",
        "evidence/decision.json",
        "evidence/excerpts.json",
        "evidence/status-grok.txt",
        "pages/pages.jsonl",
        "provenance/statement.intoto.json",
    ]
    decision = json.loads(files["evidence/decision.json"])
    assert decision["decision"]["decision_id"] == DECISION_ID
    assert decision["decision"]["probabilities"] == [0.7, 0.3]
    assert [a["status"] for a in decision["attempts"]] == ["timeout", "ok", "5xx"]
    assert decision["attempts"][1]["cost_usd"] == 0.000006
    assert decision["trace"]["url"].endswith("4bf92f3577b34da6a3ce929d0e0e4736")
    assert "Elevated latency on grok API" in files["evidence/status-grok.txt"].decode()
    statement = json.loads(files["provenance/statement.intoto.json"])
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    for name, data in files.items():
        if name.startswith(("archive/", "evidence/", "pages/")):
            assert subjects[name] == hashlib.sha256(data).hexdigest()
    assert statement["predicate"]["capturedAt"] == "2025-12-01T18:41:00.000Z"
    with zipfile.ZipFile(bundle_path) as archive:  # incident time, not the wall clock
        assert {info.date_time for info in archive.infolist()} == {(2025, 12, 1, 18, 41, 0)}


def test_warc_digests_are_sha256_of_each_block(bundle_path):
    warc = files_of(bundle_path)["archive/exchanges.warc"]
    records = warc.split(b"WARC/1.1\r\n")[1:]
    assert len(records) == 1 + 2 * 2 + 1 + 1  # warcinfo, 2 exchanges, 1 attempt without one, 1 status page
    for record in records:
        head, _, rest = record.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        block = rest[: int(fields["Content-Length"])]
        expected = base64.b32encode(hashlib.sha256(block).digest()).decode()
        assert fields["WARC-Block-Digest"] == f"sha256:{expected}"


def test_warcio_check_and_wacz_validate_pass(bundle_path, tmp_path):
    with zipfile.ZipFile(bundle_path) as archive:
        archive.extract("archive/exchanges.warc", tmp_path)
    check = subprocess.run(
        [BIN / "warcio", "check", "-v", tmp_path / "archive/exchanges.warc"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("digest pass") == 7
    validate = subprocess.run([BIN / "wacz", "validate", "-f", bundle_path], capture_output=True, text=True)
    assert validate.returncode == 0 and "is valid" in validate.stdout, validate.stdout + validate.stderr


def test_verify_passes_then_fails_on_a_one_byte_change_to_any_file(bundle_path, tmp_path):
    assert verify_bundle(bundle_path) == []
    files = files_of(bundle_path)
    for name, data in files.items():
        changed = bytearray(data)
        changed[len(data) // 2] ^= 0x01
        copy = tmp_path / "changed.wacz"
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for other, content in files.items():
                archive.writestr(other, bytes(changed) if other == name else content)
        copy.write_bytes(out.getvalue())
        problems = verify_bundle(copy)
        assert problems, f"a changed {name} went unnoticed"
        assert name in problems[0] or "datapackage" in problems[0], problems


def test_an_exchange_without_an_answer_is_its_request_alone(tmp_path):
    from dataclasses import replace

    inputs = planted_inputs()
    unanswered = replace(inputs.exchanges[0], status=0, response_headers={}, response_body=b"")
    bundle = build_bundle(replace(inputs, exchanges=[unanswered]), corpus_redactor(), SOFTWARE)
    path = tmp_path / bundle.name
    path.write_bytes(bundle.data)
    warc = files_of(path)["archive/exchanges.warc"]
    assert warc.count(b"WARC-Type: request") == 1 and b"WARC-Concurrent-To" not in warc
    # the attempts without an exchange (2 and 3) are their usage records
    assert warc.count(b"WARC-Type: metadata") == 2
    assert verify_bundle(path) == []
