"""An alert's evidence bundle from the console: the Alerts view's own query finds it, the link serves it.

A real engine judges failing attempts into an SLO alert, captures its bundle (the evidence flag on)
and records it; the test then runs the SQL of ``console/src/views/Alerts.tsx`` through the console's
``/query`` and follows the link the view builds.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
import redis

from dataflows.evidence_view import checked
from symphony import engine_client
from symphony.events import Event
from symphony.stream import publish
from tests.engineutil import ADMIN_TOKEN, ANALYST_TOKEN, SHARDS, SPANS_TOKEN, Engine, pair

ALERTS_VIEW = Path(__file__).parents[2] / "console/src/views/Alerts.tsx"


def alerts_sql() -> str:
    found = re.search(r"const SQL = `([^`]+)`", ALERTS_VIEW.read_text())
    assert found, "the Alerts view's query"
    return found.group(1)


def failing_attempts() -> list[Event]:
    """Twenty attempts on gemini, one a second, every other a 5xx; each decision traced (the exemplar)."""
    sent: list[Event] = []
    for i in range(20):
        decision, usage = pair(1000 * i)
        arm = {"provider": "gemini", "model": "gemini-2.5-flash"}
        status = "5xx" if i % 2 else "ok"
        sent.append(decision.model_copy(update={**arm, "trace_id": f"{i + 1:032x}"}))
        sent.append(usage.model_copy(update={**arm, "status": status}))
    return sent


def test_each_alert_links_to_its_evidence_bundle(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLO_MIN_ATTEMPTS", "5")
    monkeypatch.setenv("SLO_WINDOW_S", "60")
    monkeypatch.setenv("SLO_STEP_S", "10")
    monkeypatch.setenv("EVIDENCE_BUNDLES", "true")
    engine.start()
    client = redis.Redis.from_url(engine.redis_url)
    publish(client, failing_attempts(), SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", 20)
    # One attempt elsewhere a step later: the SLO branch judges the window that holds all twenty.
    publish(client, list(pair(30_000)), SHARDS)
    client.close()
    engine_client.wait_for_count(engine.url, "SELECT count() FROM evidence_bundles FINAL", 1, timeout=60)
    base, analyst = engine.bare_url, ("x", ANALYST_TOKEN)

    # The view's own query: the firing alert carries its bundle's id, as recorded.
    answer = httpx.post(f"{base}/console/query", json={"sql": alerts_sql()}, auth=analyst)
    assert answer.status_code == 200, answer.text
    rows = [dict(zip(answer.json()["columns"], row, strict=True)) for row in answer.json()["rows"]]
    recorded = engine_client.query(
        engine.url, "SELECT incident_id, bundle_id, sha256, path FROM evidence_bundles FINAL"
    ).rows
    (incident, bundle_id, sha256, path) = recorded[0]
    alert_ids = engine_client.query(engine.url, "SELECT alert_id FROM alerts WHERE status = 'firing'").rows
    assert [incident] == [row[0] for row in alert_ids]
    firing = [row for row in rows if row["status"] == "firing"]
    assert [row["evidence"] for row in firing] == [bundle_id]
    assert checked(bundle_id) == bundle_id  # the id the link is built from passes the server's check

    # The link: the file itself, an attachment, its bytes the recorded hash.
    link = f"{base}/console/evidence/{bundle_id}"
    got = httpx.get(link, auth=analyst)
    assert got.status_code == 200 and got.headers["content-type"] == "application/wacz"
    assert got.headers["content-disposition"] == f'attachment; filename="{bundle_id}.wacz"'
    assert hashlib.sha256(got.content).hexdigest() == sha256 and got.content[:2] == b"PK"
    assert httpx.get(link, auth=("x", ADMIN_TOKEN)).status_code == 200
    assert httpx.get(link, auth=("x", SPANS_TOKEN)).status_code == 403
    assert httpx.get(link).status_code == 401

    # Nothing but a bundle id reaches the folder; an id ClickHouse does not know is a 404.
    for probe in (
        "...",
        "evidence-..-0123456789abcdef",
        "evidence-a%00-0123456789abcdef",
        f"{bundle_id}.wacz",
        "x",
    ):
        refused = httpx.get(f"{base}/console/evidence/{probe}", auth=analyst)
        assert refused.status_code == 400 and "evidence bundle id" in refused.json()["error"], probe
    traversal = httpx.get(f"{base}/console/evidence/..%2F..%2F..%2Fpyproject.toml", auth=analyst)
    assert "[project]" not in traversal.text  # a slash is no id: that path is the console's page
    unknown = httpx.get(f"{base}/console/evidence/evidence-nobody-0123456789abcdef", auth=analyst)
    assert unknown.status_code == 404

    # A file that no longer matches its hash is not sent; one not on this host gives the recorded row.
    file = Path(path)
    assert file.parent == engine.var_dir / "evidence"
    original = file.read_bytes()
    file.write_bytes(original + b"tampered")
    tampered = httpx.get(link, auth=analyst)
    assert tampered.status_code == 200 and tampered.headers["content-type"] == "application/json"
    assert "does not match the recorded sha256" in tampered.json()["file"]
    file.unlink()
    elsewhere = httpx.get(link, auth=analyst).json()
    assert elsewhere["bundle_id"] == bundle_id and elsewhere["incident_id"] == incident
    assert elsewhere["sha256"] == sha256 and elsewhere["file"].startswith("not on this host")
