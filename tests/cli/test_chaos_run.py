"""`symphony chaos-run` as CI runs it: a real stack on the simulator, real faults, a real engine crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
GATES = json.loads((ROOT / "policies" / "gates.v1.json").read_text())


def chaos_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cli", "chaos-run", "--var-dir", str(tmp_path / "var"), *args]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)


def setup_policies(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    for name in ("champion.json", "quotas.v1.json", "catalog.v1.json", "gates.v1.json"):
        (tmp_path / "policies" / name).symlink_to(ROOT / "policies" / name)


def test_an_engine_crash_and_a_provider_down_pass_with_every_decision_once(tmp_path: Path) -> None:
    setup_policies(tmp_path)
    ran = chaos_run(
        tmp_path, "--short", "--scenario", "engine-crash", "--scenario", "provider-down", "--json"
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr[-3000:]
    report = json.loads(ran.stdout)
    assert report["passed"] is True and [s["name"] for s in report["scenarios"]] == [
        "engine-crash",
        "provider-down",
    ]
    expected = round(GATES["chaos"]["rate"] * GATES["chaos"]["short_duration_s"])
    for scenario in report["scenarios"]:
        assert scenario["sent"] == expected and scenario["answered_in_clickhouse"] == scenario["succeeded"]
        assert scenario["quota_mismatches"] == []
    assert "SIGKILL to the engine" in ran.stderr and "engine   restarted" in ran.stderr
    assert json.loads((tmp_path / "runs" / "gates" / "chaos-run.json").read_text()) == report


def test_a_scenario_past_its_bound_fails_the_gate(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    for name in ("champion.json", "quotas.v1.json", "catalog.v1.json"):
        (tmp_path / "policies" / name).symlink_to(ROOT / "policies" / name)
    strict = json.loads(json.dumps(GATES))
    strict["chaos"]["scenarios"]["slow-first-byte"]["max_p99_ms"] = 1
    (tmp_path / "policies" / "gates.v1.json").write_text(json.dumps(strict))
    ran = chaos_run(tmp_path, "--short", "--scenario", "slow-first-byte")
    assert ran.returncode == 1, ran.stdout + ran.stderr[-3000:]
    # Said as it ends, and again in the summary.
    line = [line for line in ran.stdout.splitlines() if line.startswith("FAIL  slow-first-byte")][-1]
    assert "(bound <= 1)" in line and "success 1," in line
    assert ran.stdout.splitlines()[-1] == "chaos gate: FAIL (0 of 1 scenarios passed)"


def test_an_unknown_scenario_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    setup_policies(tmp_path)
    ran = chaos_run(tmp_path, "--scenario", "meteor")
    assert ran.returncode == 2 and "unknown scenario 'meteor': the scenarios are 429-storm," in ran.stderr
    assert not (tmp_path / "var").exists()


def test_evidence_for_a_failed_scenario_follows_the_live_flag(redis_server) -> None:  # type: ignore[no-untyped-def]
    import redis

    from cli.chaos_run import evidence_on
    from symphony.keys import FLAGS_KEY
    from symphony.settings import load_settings

    client = redis.Redis.from_url(redis_server.url)
    assert not evidence_on(load_settings(redis_url=redis_server.url))
    assert evidence_on(load_settings(redis_url=redis_server.url, evidence_bundles=True))
    client.hset(FLAGS_KEY, "evidence_bundles", "off")  # `symphony flags --evidence off`
    assert not evidence_on(load_settings(redis_url=redis_server.url, evidence_bundles=True))
