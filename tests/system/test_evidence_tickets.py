"""Evidence end to end: a provider made slow in the simulator fires an SLO alert in a real engine
(EVIDENCE_BUNDLES=true), which opens exactly one GitHub issue and one Jira issue on local stand-ins,
each carrying or linking the bundle; when the arm fires again, each ticket gets a comment.

The proxy keeps the slow exchanges in its evidence ring, so the bundle's WARC holds the exemplar's
request and answer. The bundle then verifies (`symphony evidence verify`), fails on a one-byte
change, passes `warcio check` and `wacz validate`; an on-demand capture of the same decision twice
gives the same bytes.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
from pydantic import SecretStr

from cli.chaos_run import evidence_for_failed_scenario
from cli.github_standin import GitHubStandIn
from symphony import engine_client
from symphony.redis_server import RedisServer, free_port
from symphony.settings import load_settings
from tests import github_standin, jira_standin
from tests.engineutil import ADMIN_TOKEN, ANALYST_TOKEN, SPANS_TOKEN, Engine
from tests.proxy_stack import ProxyStack
from tests.system.test_slo_alerts import traffic, wait_for

BIN = Path(sys.executable).parent


def test_a_slow_provider_opens_one_ticket_each_and_firing_again_comments(
    tmp_path: Path, redis_server: RedisServer, github: GitHubStandIn
) -> None:
    with jira_standin.serve_jira() as jira:
        port = free_port()
        with ProxyStack(
            redis_server,
            spans_token=SecretStr(SPANS_TOKEN),
            engine_port=port,
            evidence_bundles=True,  # the proxy keeps slow exchanges (over SLO_P95_MS) in its ring
            slo_p95_ms=400,
        ) as stack:
            settings = {
                "EVIDENCE_BUNDLES": "true",
                "SLO_P95_MS": "400",
                "SLO_WINDOW_S": "3",
                "SLO_STEP_S": "1",
                "SLO_MIN_ATTEMPTS": "10",
                "SIM_URL": stack.sim.url,
                "SIMULATED_PROVIDERS": "all",
                "EVIDENCE_GITHUB_REPOSITORY": "acme/symphony",
                "EVIDENCE_GITHUB_TOKEN": github_standin.TOKEN,
                "EVIDENCE_GITHUB_API_URL": github.url,
                "JIRA_URL": jira.url,
                "JIRA_EMAIL": jira_standin.EMAIL,
                "JIRA_API_TOKEN": jira_standin.TOKEN,
                "JIRA_PROJECT": jira_standin.PROJECT,
            }
            (tmp_path / "engine").mkdir()
            engine = Engine(redis_server.url, tmp_path / "engine", port=port, env=settings).start()
            try:
                stack.faults("grok", slow_ttft_ms=800)
                assert asyncio.run(traffic(stack, 4)) >= 90
                wait_for(lambda: jira.attachments.get(_latency_key(jira)), 40, "a Jira attachment")
                # Fast traffic resolves the alert (windows move in event time: they need events);
                # slow traffic again fires it again.
                stack.faults("grok")
                asyncio.run(traffic(stack, 4))
                stack.faults("grok", slow_ttft_ms=800)
                assert asyncio.run(traffic(stack, 4)) >= 90
                wait_for(lambda: jira.comments.get(_latency_key(jira)), 40, "a comment on the Jira issue")
                wait_for(lambda: github.comments.get(_latency_number(github)), 10, "a GitHub comment")
                firings = _firings(engine)  # objective -> times it fired (latency; errors too, maybe)
                rows = wait_for(
                    lambda: len(r := _bundles(engine)) == sum(firings.values()) and r,
                    20,
                    "a bundle per firing",
                )
                decision_id = str(rows[0][1])
                # on demand: once by the command, once by the engine's API it calls
                request = {"decision_id": decision_id}
                again = [
                    _capture_cli(engine, decision_id),
                    engine_client.capture_evidence(engine.url, request),
                ]
                as_analyst = httpx.post(
                    f"{engine.bare_url}/evidence/capture",
                    json=request,
                    headers={"Authorization": f"Bearer {ANALYST_TOKEN}"},
                )
                tickets_before = (dict(github.issues), dict(jira.issues))
                chaos = load_settings(engine_port=port, admin_token=ADMIN_TOKEN, analyst_token=ANALYST_TOKEN)
                chaos_line = evidence_for_failed_scenario(chaos, "slow_first_byte")
                chaos_tickets = (len(github.issues), len(jira.issues))
            finally:
                engine.stop()

    # a failed chaos scenario is an incident of its own: a bundle and a ticket each, keyed chaos:<scenario>
    assert chaos_line.startswith("scenario slow_first_byte: evidence ") and "tickets" in chaos_line
    assert chaos_tickets == (len(tickets_before[0]) + 1, len(tickets_before[1]) + 1)

    # exactly one ticket per incident (arm and objective) and system, beside the chaos scenario's; every
    # later firing is a comment.
    # Under load some slow attempts may also fail: an error-rate alert is an incident of its own.
    assert firings["p95_latency_ms"] >= 2
    incidents, later = len(firings), sum(firings.values()) - len(firings)
    assert len(github.called("POST", "/repos/acme/symphony/issues")) == len(github.issues) == incidents + 1
    assert len(jira.called("POST", "/rest/api/3/issue")) == len(jira.issues) == incidents + 1  # + chaos
    assert sum(map(len, github.comments.values())) == sum(map(len, jira.comments.values())) == later
    number, key = _latency_number(github), _latency_key(jira)
    assert len(github.comments[number]) == len(jira.comments[key]) == firings["p95_latency_ms"] - 1
    issue = github.issues[number]
    assert "SymphonyLatencyP95" in issue["body"] and "grok/grok-3-mini" in issue["title"]
    assert "/releases/download/evidence/evidence-" in issue["body"]
    fields = jira.issues[key]
    assert fields["issuetype"] == {"name": "Bug"} and fields["description"]["type"] == "doc"
    attachments = jira.attachments[key]
    assert len(attachments) == firings["p95_latency_ms"]
    every_attachment = {name for files in jira.attachments.values() for name, _ in files}
    assert set(github.uploaded) == every_attachment

    bundle = tmp_path / "engine" / "evidence" / attachments[0][0]
    assert bundle.read_bytes() == attachments[0][1] == github.uploaded[bundle.name]
    assert {row[0] for row in rows} == {"slo_alert"} and all(row[2] for row in rows)
    with zipfile.ZipFile(bundle) as archive:
        decision = json.loads(archive.read("evidence/decision.json"))
        status_text = archive.read("evidence/status-grok.txt").decode()
        alert = json.loads(archive.read("evidence/alert.json"))
        warc = archive.read("archive/exchanges.warc")
    assert decision["decision"]["provider"] == "grok" and decision["attempts"][0]["latency_ms"] > 400
    assert "Degraded performance" in status_text
    assert (
        alert["name"] == "SymphonyLatencyP95" and alert["decision_id"] == decision["decision"]["decision_id"]
    )
    # the exemplar's exchange, from the proxy's ring: the request as sent and the provider's answer
    assert b"WARC-Type: request" in warc and b"WARC-Type: response" in warc
    assert b'"object":"chat.completion"' in warc.replace(b'": "', b'":"')
    assert b"[REDACTED:header]" in warc  # the provider key's header
    assert ADMIN_TOKEN.encode() not in warc and jira_standin.TOKEN.encode() not in bundle.read_bytes()

    # verify passes, and fails naming the file on a one-byte change to one
    ok = _symphony("evidence", "verify", str(bundle), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"], ok.stdout + ok.stderr
    changed = _with_one_byte_changed(bundle, "evidence/decision.json", tmp_path / "changed.wacz")
    bad = _symphony("evidence", "verify", str(changed))
    assert bad.returncode == 1 and "evidence/decision.json" in bad.stdout.splitlines()[0]
    warc_file = tmp_path / "exchanges.warc"
    warc_file.write_bytes(warc)
    assert subprocess.run([BIN / "warcio", "check", warc_file], check=False).returncode == 0
    validate = subprocess.run([BIN / "wacz", "validate", "-f", bundle], capture_output=True, text=True)
    assert validate.returncode == 0 and "is valid" in validate.stdout, validate.stdout

    # two on-demand captures of the same incident data: byte-identical bundles; an analyst may not capture
    assert as_analyst.status_code == 403
    assert again[0]["sha256"] == again[1]["sha256"] and again[0]["bundle"] == again[1]["bundle"]


def _firings(engine: Engine) -> dict[str, int]:
    sql = "SELECT objective, count() FROM alerts FINAL WHERE status = 'firing' GROUP BY objective"
    return {str(objective): int(n) for objective, n in engine_client.query(engine.url, sql).rows}


def _latency_key(jira: jira_standin.JiraStandIn) -> str:
    return next((k for k, f in jira.issues.items() if "p95 latency" in f["summary"]), "")


def _latency_number(github: GitHubStandIn) -> int:
    return next((n for n, issue in github.issues.items() if "p95 latency" in issue["title"]), 0)


def _bundles(engine: Engine) -> list[list[object]]:
    sql = "SELECT trigger, decision_id, ticket_links FROM evidence_bundles FINAL ORDER BY at"
    return engine_client.query(engine.url, sql).rows


def _symphony(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "symphony", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def _capture_cli(engine: Engine, decision_id: str) -> dict[str, object]:
    env = {"ENGINE_PORT": str(engine.port), "ADMIN_TOKEN": ADMIN_TOKEN}
    done = _symphony("evidence", "capture", "--decision-id", decision_id, "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    outcome: dict[str, object] = json.loads(done.stdout)
    return outcome


def _with_one_byte_changed(bundle: Path, name: str, out: Path) -> Path:
    with zipfile.ZipFile(bundle) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    data = bytearray(files[name])
    data[10] ^= 0x20
    files[name] = bytes(data)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, content in files.items():
            archive.writestr(n, content)
    out.write_bytes(buffer.getvalue())
    return out
