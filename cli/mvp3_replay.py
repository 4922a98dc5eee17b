"""The go-live replay: two simulated weeks of traffic on a fresh stack, and what it leaves to judge.

``symphony learner-week`` over ``days`` days (14 by default) with three additions, so one run
shows the learner, the quotas and the tracing acceptances (``cli.mvp3_rows``):

- before the traffic, the simulator's OpenAI reports a requests-a-minute limit below the
  policy's (the reconciler must notice and lower the runtime cap), and every provider fails a
  share of its answers for the traffic's first two SLO windows (an SLO alert must fire, with a
  link to a trace that breached, and resolve; at the default pace that is the first day, far
  from the last two the promotion is judged on; fallbacks still answer the requests);
- while the stack still runs after the traffic: the quota matrix, the ``quota:*`` windows in
  Redis, the trace coverage of the replay's last hour, the alerts and the span attributes
  (ClickHouse), the Model Matrix's ETA clocks as Chromium shows them on the engine's console
  (``console/scripts/eta-clocks.mjs``), and the engine's log, written under ``folder/replay/``;
- the promotion opened as a pull request on a local GitHub stand-in over a scratch clone of
  this repository, merged as a reviewer would, and the base branch's ``git log`` recorded;
- with ``EVIDENCE_BUNDLES`` on, the engine opens a ticket for the SLO alert on the same stand-in
  (the issue, its bundle a release asset): the tickets, their assets' SHA-256 and the bundles
  the engine wrote are kept for the judge to verify (``folder/evidence.json``).

The simulated clock runs ``days * 24h / minutes`` times faster than the wall clock, so the
SLO window (``SLO_WINDOW_S``, judged every sixth of it) is set to ``slo_window_real_s`` real
seconds of traffic in event time: enough attempts per arm for the SLO to say something, as
five minutes of production traffic would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis

from cli import learner_week, mvp3_rows, trace_coverage
from cli.github_standin import GitHubStandIn, serve_github
from cli.mvp3_design import console_deps
from cli.supervisor import Stack
from learner.pull_request import PromotionError, promote
from symphony import clock, engine_client
from symphony.catalog import load_catalog
from symphony.quotas import load_quota_policy
from symphony.quotas.matrix import COLUMNS, quota_matrix
from symphony.redis_client import sync_redis
from symphony.settings import Settings

Say = Callable[[str], None]
REPOSITORY = "symphony/replay"
HOUR_MS = 3600 * 1000
SPAN_ATTRIBUTES_SQL = (
    "SELECT "
    + ", ".join(f"countIf(mapContains(SpanAttributes, '{name}'))" for name in mvp3_rows.SPAN_ATTRIBUTES)
    + " FROM otel_traces WHERE ServiceName = 'symphony-proxy'"
)
ALERTS_SQL = """
SELECT alert_id, status, alertname, provider, model, objective, value, threshold,
       toUnixTimestamp64Milli(started_at), trace_id, decision_id, trace_url
FROM alerts FINAL ORDER BY started_at
"""
LAST_DECISION_SQL = "SELECT toUnixTimestamp64Milli(max(ts)) FROM decisions FINAL"
ALERT_COLUMNS = (
    "alert_id", "status", "alertname", "provider", "model", "objective", "value", "threshold",
    "started_ms", "trace_id", "decision_id", "trace_url",
)  # fmt: skip
SPANS_WAIT_S = 30.0


@dataclass(frozen=True)
class ReplayConfig:
    days: int = 14
    minutes: float = 10.0
    rate: float = 40.0
    reported_rpm_share: float = 0.5  # OpenAI reports this share of the policy's requests a minute
    fault_share: float = 0.3  # of every provider's answers, a 5xx: whichever arms the champion favours
    slo_window_real_s: float = 8.0


def run_replay(config: ReplayConfig, folder: Path, say: Say) -> None:
    out = folder / "replay"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    week = learner_week.WeekConfig(days=config.days, minutes=config.minutes, rate=config.rate)
    slo_window_s = config.slo_window_real_s * week.speed
    token = os.urandom(16).hex()
    origin, work = _scratch_repository(folder / "repository")
    with serve_github(origin, REPOSITORY, token) as github:
        os.environ.update(
            {
                "GITHUB_TOKEN": token,
                "GITHUB_REPOSITORY": REPOSITORY,
                "GITHUB_API_URL": github.url,
                "SLO_WINDOW_S": str(slo_window_s),
                "SLO_STEP_S": str(slo_window_s / 6),
                "EVIDENCE_BUNDLES": "true",
                "EVIDENCE_GITHUB_REPOSITORY": REPOSITORY,
                "EVIDENCE_GITHUB_TOKEN": token,
                "EVIDENCE_GITHUB_API_URL": github.url,
            }
        )
        args = argparse.Namespace(version=None, base=_branch(work), repo=work)
        run = learner_week.run_week(
            week,
            var_dir=folder / "stack",
            args=args,
            say=say,
            prepare=lambda settings: _prepare(settings, config, week.speed, say),
            inspect=lambda settings, stack: _inspect(settings, stack, out, say),
        )
        _keep_week(run, out)
        _write(out / "promotion.json", _promotion(run, github, origin, args.base, say))
        _write(folder / mvp3_rows.EVIDENCE, _evidence(github, folder / "stack" / "evidence", folder))


def _prepare(settings: Settings, config: ReplayConfig, speed: float, say: Say) -> None:
    sim = settings.resolved_sim_url
    policy_rpm = load_quota_policy().providers["openai"].caps["requests"]["minute"]
    reported = int(policy_rpm * config.reported_rpm_share)
    httpx.put(f"{sim}/admin/limits/openai", json={"rpm": reported}, timeout=5.0).raise_for_status()
    for provider in load_catalog().providers:
        fault = {"rate_5xx": config.fault_share}
        httpx.put(f"{sim}/admin/faults/{provider}", json=fault, timeout=5.0).raise_for_status()
    seconds = 2 * config.slo_window_real_s
    say(
        f"openai reports {reported} requests a minute (policy {policy_rpm}); every provider fails"
        f" {config.fault_share:.0%} of its answers for {seconds:g} s"
        f" ({seconds * speed / 3600:.1f} simulated hours)"
    )
    timer = threading.Timer(seconds, _clear_faults, args=(sim,))
    timer.daemon = True
    timer.start()


def _clear_faults(simulator_url: str) -> None:
    httpx.delete(f"{simulator_url}/admin/faults", timeout=5.0).raise_for_status()


def _inspect(settings: Settings, stack: Stack, out: Path, say: Say) -> None:
    say("reading the quota matrix, the quota windows, the traces and the alerts")
    client = sync_redis(settings.redis_url)
    try:
        now = clock.shared_clock(client).now_ms()
        rows = quota_matrix(client, load_quota_policy(), now)
        matrix = {
            "providers": sorted(load_catalog().providers),
            "rows": [dict(zip(COLUMNS, row.cells(human=False), strict=True)) for row in rows],
        }
        _write(out / "quotas-matrix.json", matrix)
        _write(out / "quota-keys.json", _quota_windows(client))
    finally:
        client.close()
    _write(out / "tracing.json", _tracing(settings.engine_url_as("analyst")))
    _write(out / "model-matrix.json", _model_matrix(settings, say))
    shutil.copy(settings.var_dir / "logs" / "engine.log", out / "engine.log")


def _model_matrix(settings: Settings, say: Say) -> dict[str, Any]:
    """Per provider, the ETA clocks the console's Model Matrix shows and whether they tick."""
    say("reading the Model Matrix's ETA clocks in Chromium")
    console_deps()
    env = {
        **os.environ,
        "ENGINE_URL": settings.engine_url,
        "ANALYST_TOKEN": urlsplit(settings.engine_url_as("analyst")).password or "",
        "PROVIDERS": ",".join(sorted(load_catalog().providers)),
    }
    done = subprocess.run(
        ["node", "scripts/eta-clocks.mjs"],
        cwd="console",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-500:], "eta_clocks": {}}
    clocks = json.loads(done.stdout)
    return {
        "eta_clocks": {p: c["sample"] for p, c in clocks.items() if c["clocks"] and c["ticking"]},
        "read": clocks,
    }


def _quota_windows(client: redis.Redis) -> dict[str, list[str]]:
    """Per provider, the windows of its ``quota:{provider}:<metric>:<window>`` hashes."""
    windows: dict[str, set[str]] = {}
    for raw in client.scan_iter(match="quota:*", count=1000):
        _, scope, _metric, window = raw.decode().split(":", 3)
        windows.setdefault(scope.strip("{}"), set()).add(window)
    return {scope: sorted(found) for scope, found in sorted(windows.items())}


def _tracing(engine: str) -> dict[str, Any]:
    """Coverage of the replay's last hour once the spans stop arriving, the alerts, the attributes."""
    until = int(engine_client.query(engine, LAST_DECISION_SQL).rows[0][0]) + 1
    deadline = clock.monotonic() + SPANS_WAIT_S
    coverage = trace_coverage.from_clickhouse(engine, until - HOUR_MS, until)
    while coverage.traced < coverage.decisions and clock.monotonic() < deadline:
        time.sleep(1.0)  # the proxy's batch exporter sends spans a few seconds after their requests
        coverage = trace_coverage.from_clickhouse(engine, until - HOUR_MS, until)
    alerts = [
        dict(zip(ALERT_COLUMNS, row, strict=True)) for row in engine_client.query(engine, ALERTS_SQL).rows
    ]
    counts = engine_client.query(engine, SPAN_ATTRIBUTES_SQL).rows[0]
    return {
        "coverage": vars(coverage),
        "alerts": alerts,
        "span_attributes": dict(zip(mvp3_rows.SPAN_ATTRIBUTES, map(int, counts), strict=True)),
    }


def _promotion(
    run: learner_week.WeekRun, github: GitHubStandIn, origin: Path, base: str, say: Say
) -> dict[str, Any]:
    """The plan carried out (a branch, a pull request), merged by the replay as a reviewer would."""
    if run.plan is None:
        return {"opened": False, "merged": False, "why": run.blocked}
    try:
        result = promote(run.plan)
    except PromotionError as exc:
        return {"opened": False, "merged": False, "why": str(exc)}
    number = result.pull_request_number
    say(f"pull request #{number} opened for {result.branch}; merging it on the stand-in")
    merge = httpx.put(
        f"{github.url}/repos/{REPOSITORY}/pulls/{number}/merge",
        headers={"Authorization": f"Bearer {os.environ['GITHUB_TOKEN']}"},
        timeout=30.0,
    )
    log = _git(origin, "log", "--format=%H", base).split()
    return {
        "opened": True,
        "number": number,
        "url": result.pull_request_url,
        "branch": result.branch,
        "commit": result.commit,
        "merged": merge.status_code == 200 and bool(merge.json().get("merged")),
        "merge_commit": merge.json().get("sha"),
        "git_log": log,
    }


def _evidence(github: GitHubStandIn, written: Path, folder: Path) -> dict[str, Any]:
    """The tickets opened on the stand-in, each with the bundle the engine wrote (copied beside the
    run's artifacts) and the SHA-256 of the asset the ticket carries."""
    kept = folder / "replay" / "evidence"
    kept.mkdir(parents=True, exist_ok=True)
    for bundle in sorted(written.glob("*.wacz")):
        shutil.copy(bundle, kept / bundle.name)
    assets = {name: data for by_name in github.assets.values() for name, data in by_name.items()}
    tickets = []
    for number, issue in sorted(github.issues.items()):
        for text in [issue.get("body", ""), *issue["comments"]]:
            name = next((n for n in assets if n in text), None)
            if name is not None:
                tickets.append(
                    {
                        "url": f"{github.web_url}/issues/{number}",
                        "title": issue.get("title"),
                        "bundle": str((kept / name).relative_to(folder)),
                        "asset_sha256": hashlib.sha256(assets[name]).hexdigest(),
                    }
                )
    return {"tickets": tickets, "bundles_written": sorted(p.name for p in written.glob("*.wacz"))}


def _scratch_repository(folder: Path) -> tuple[Path, Path]:
    """A bare clone of this repository (the pull requests' remote) and a checkout of it."""
    shutil.rmtree(folder, ignore_errors=True)
    origin, work = folder / "origin.git", folder / "work"
    top = _git(Path.cwd(), "rev-parse", "--show-toplevel")
    subprocess.run(["git", "clone", "--quiet", "--bare", top, str(origin)], check=True)
    subprocess.run(["git", "clone", "--quiet", str(origin), str(work)], check=True)
    _git(work, "config", "user.name", "Symphony go-live replay")
    _git(work, "config", "user.email", "replay@symphony.localhost")
    return origin, work


def _branch(repository: Path) -> str:
    return _git(repository, "rev-parse", "--abbrev-ref", "HEAD")


def _git(repository: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repository), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _keep_week(run: learner_week.WeekRun, out: Path) -> None:
    _write(out / "learner-week.json", run.to_dict())
    with (out / "learner-metrics.jsonl").open("a") as log:
        log.write(json.dumps(run.report) + "\n")


def _write(path: Path, body: Any) -> None:
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
