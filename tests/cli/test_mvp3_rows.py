"""`symphony mvp3-validate`'s judges: a run's artifacts that meet every acceptance pass; breaking any
one condition (an impossible bound, a missing artifact, a changed figure) fails that row alone, and
the command exits 1."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli import mvp3_rows
from cli.gates import AcceptanceGate
from cli.mvp3_design import drifted_files, visual_counts
from learner.promotion import WINDOW_MS
from sinks.evidence.bundle import build_bundle
from tests.evidence_inputs import corpus_redactor, planted_inputs

ROOT = Path(__file__).parents[2]
DAY0 = 1_700_000_000_000 - 1_700_000_000_000 % WINDOW_MS
PROVIDERS = ["anthropic", "deepseek", "gemini", "grok", "openai", "perplexity", "venice"]


def window(day: int, uplift_low: float | None, alerts: int = 0) -> dict[str, Any]:
    return {
        "start_ms": DAY0 + day * WINDOW_MS,
        "ended": True,
        "group": "all",
        "uplift_low": uplift_low,
        "slo": {"breached": False},
        "slo_alerts": alerts,
    }


# A real bundle, as the engine builds one for an incident (sinks.evidence).
BUNDLE = "replay/evidence/incident.wacz"
BUNDLE_BYTES = build_bundle(planted_inputs(), corpus_redactor(), "tests").data  # type: ignore[no-untyped-call]
BUNDLE_SHA = hashlib.sha256(BUNDLE_BYTES).hexdigest()


def tampered(data: bytes) -> bytes:
    """The bundle with one byte of its WARC changed, in place (verification names the first mismatch:
    here the zip's own CRC of that file)."""
    at = data.index(b"WARC/1.1") + 600
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def passing_artifacts() -> dict[str, Any]:
    """What a run that meets every acceptance leaves, by artifact name."""
    windows = [window(0, -0.2, alerts=3)] + [window(day, 0.25) for day in range(1, 14)]
    windows.append(window(13, 0.3) | {"group": "reasoning"})
    report = {"windows": windows, "promotion": {"candidate": True, "reasons": []}}
    return {
        mvp3_rows.LEARNER_WEEK: {"report": report},
        mvp3_rows.LEARNER_METRICS: report,
        mvp3_rows.PROMOTION: {
            "merged": True,
            "number": 1,
            "commit": "c0ffee",
            "git_log": ["m3rge", "c0ffee"],
        },
        mvp3_rows.QUOTAS_MATRIX: {"providers": PROVIDERS, "rows": [{"scope": p} for p in PROVIDERS]},
        mvp3_rows.QUOTA_KEYS: {p: ["5h", "day", "minute", "week"] for p in PROVIDERS},
        mvp3_rows.MODEL_MATRIX: {"eta_clocks": {p: "resets in 2h 03m" for p in PROVIDERS}},
        mvp3_rows.RECONCILER_LOG: (
            "W policy_vs_observed=diff provider=openai window=minute metric=requests"
            " policy=5000 observed=2500\n"
            "W runtime_cap_adjustment provider=openai window=minute metric=requests from=5000 to=2500\n"
        ),
        mvp3_rows.SCHEDULER: {
            "compare": {
                "providers": [
                    {"provider": "openai", "utilisation": 0.981},
                    {"provider": "anthropic", "utilisation": 0.986},
                    {"provider": "gemini", "utilisation": 1.0},
                ]
            },
            "deltas": {"overflow_change": -0.426},
        },
        mvp3_rows.TRACING: {
            "coverage": {"decisions": 100, "traced": 99},
            "alerts": [{"status": "firing", "trace_url": "http://127.0.0.1:8001/traces/ab12"}],
            "span_attributes": dict.fromkeys(mvp3_rows.SPAN_ATTRIBUTES, 100),
        },
        mvp3_rows.PERF: {"passed": True, "checks": [{"name": "p95 ms", "measured": 80.0, "bound": "< 250"}]},
        mvp3_rows.CHAOS: {"short": False, "scenarios": [{"name": "429-storm", "passed": True}]},
        mvp3_rows.EVIDENCE: {
            "tickets": [{"url": "http://gh/1", "bundle": BUNDLE, "asset_sha256": BUNDLE_SHA}]
        },
        BUNDLE: BUNDLE_BYTES,
        mvp3_rows.DESIGN: {
            "tokens_drift": [],
            "lighthouse": {"model-matrix": 98, "alerts": 100},
            "visual": {"passed": 8, "failed": 0},
        },
    }


def write(folder: Path, artifacts: dict[str, Any]) -> Path:
    for name, body in artifacts.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            path.write_bytes(body)
        elif name.endswith(".jsonl"):
            path.write_text(json.dumps(body) + "\n")
        else:
            path.write_text(body if isinstance(body, str) else json.dumps(body))
    return folder


def verdicts(folder: Path, bounds: AcceptanceGate | None = None) -> dict[int, bool]:
    return {row.number: row.passed for row in mvp3_rows.judge_all(folder, bounds or AcceptanceGate())}


def test_a_run_that_meets_every_acceptance_passes_every_row(tmp_path: Path) -> None:
    rows = mvp3_rows.judge_all(write(tmp_path, passing_artifacts()), AcceptanceGate())
    assert [(row.number, row.passed) for row in rows] == [(n, True) for n in range(1, 7)]
    assert all(row.artifacts for row in rows)


Break = Callable[[dict[str, Any]], None]


def _set(name: str, *path: str | int, value: Any) -> Break:
    def apply(artifacts: dict[str, Any]) -> None:
        target = artifacts[name]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _drop(name: str) -> Break:
    return lambda artifacts: artifacts.pop(name)


BREAKS: dict[str, tuple[int, Break]] = {
    "an alert in a promotion window": (
        1,
        _set(mvp3_rows.LEARNER_WEEK, "report", "windows", 13, "slo_alerts", value=1),
    ),
    "uplift below the bound": (
        1,
        _set(mvp3_rows.LEARNER_WEEK, "report", "windows", 12, "uplift_low", value=0.09),
    ),
    "windows not consecutive": (
        1,
        _set(mvp3_rows.LEARNER_WEEK, "report", "windows", 12, "ended", value=False),
    ),
    "no promotion candidate": (1, _set(mvp3_rows.LEARNER_METRICS, "promotion", "candidate", value=False)),
    "pull request not merged": (1, _set(mvp3_rows.PROMOTION, "merged", value=False)),
    "its commit not in git log": (1, _set(mvp3_rows.PROMOTION, "git_log", value=["m3rge"])),
    "a provider missing from the matrix": (
        2,
        _set(mvp3_rows.QUOTAS_MATRIX, "rows", value=[{"scope": "openai"}]),
    ),
    "no week bucket for grok": (2, _set(mvp3_rows.QUOTA_KEYS, "grok", value=["minute", "day"])),
    "no ETA clock for venice": (2, _set(mvp3_rows.MODEL_MATRIX, "eta_clocks", "venice", value="")),
    "no browser check": (2, _drop(mvp3_rows.MODEL_MATRIX)),
    "an adjustment without a diff": (
        2,
        lambda a: a.update({mvp3_rows.RECONCILER_LOG: a[mvp3_rows.RECONCILER_LOG].split("\n", 1)[1]}),
    ),
    "gemini under 90%": (3, _set(mvp3_rows.SCHEDULER, "compare", "providers", 2, "utilisation", value=0.89)),
    "overflow cut 29%": (3, _set(mvp3_rows.SCHEDULER, "deltas", "overflow_change", value=-0.29)),
    "coverage 94%": (4, _set(mvp3_rows.TRACING, "coverage", "traced", value=94)),
    "no alert with a trace link": (4, _set(mvp3_rows.TRACING, "alerts", 0, "trace_url", value="")),
    "an attribute missing": (4, _set(mvp3_rows.TRACING, "span_attributes", "symphony.overrides", value=0)),
    "perf over its threshold": (5, _set(mvp3_rows.PERF, "passed", value=False)),
    "a chaos scenario failed": (5, _set(mvp3_rows.CHAOS, "scenarios", 0, "passed", value=False)),
    "only the short chaos run": (5, _set(mvp3_rows.CHAOS, "short", value=True)),
    "no ticket": (5, _set(mvp3_rows.EVIDENCE, "tickets", value=[])),
    "a tampered bundle": (5, lambda a: a.update({BUNDLE: tampered(BUNDLE_BYTES)})),
    "a bundle missing": (5, _drop(BUNDLE)),
    "a ticket carrying another file": (
        5,
        _set(mvp3_rows.EVIDENCE, "tickets", 0, "asset_sha256", value="0" * 64),
    ),
    "tokens drifted": (6, _set(mvp3_rows.DESIGN, "tokens_drift", value=["console/src/theme/mui.ts"])),
    "a view under 95": (6, _set(mvp3_rows.DESIGN, "lighthouse", "alerts", value=94)),
    "a visual test failed": (6, _set(mvp3_rows.DESIGN, "visual", "failed", value=1)),
    "no design run": (6, _drop(mvp3_rows.DESIGN)),
}


@pytest.mark.parametrize("name", BREAKS)
def test_breaking_one_condition_fails_its_row_alone(tmp_path: Path, name: str) -> None:
    number, apply = BREAKS[name]
    artifacts = passing_artifacts()
    apply(artifacts)
    expected = {n: n != number for n in range(1, 7)}
    assert verdicts(write(tmp_path, artifacts)) == expected


@pytest.mark.parametrize(
    ("bound", "number"),
    [
        ({"learner_min_uplift": 0.26}, 1),
        ({"learner_windows": 14}, 1),  # the first window is an alert's and below the bound
        ({"window_utilisation": 0.99}, 3),
        ({"overflow_cut": 0.5}, 3),
        ({"trace_coverage": 1.0}, 4),
        ({"lighthouse_accessibility": 99}, 6),
    ],
)
def test_an_impossible_bound_fails_its_row(tmp_path: Path, bound: dict[str, float], number: int) -> None:
    folder = write(tmp_path, passing_artifacts())
    assert verdicts(folder, AcceptanceGate.model_validate(bound)) == {n: n != number for n in range(1, 7)}


def test_the_command_judges_a_run_and_exits_1_on_a_failed_row(tmp_path: Path) -> None:
    folder = write(tmp_path / "run", passing_artifacts())
    (folder / "mvp3-validate.json").write_text(json.dumps({"commit": "c0ffee", "rows": []}))
    command = [
        sys.executable,
        "-m",
        "cli",
        "mvp3-validate",
        "--judge-only",
        "--folder",
        str(folder),
        "--json",
    ]
    passed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert passed.returncode == 0, passed.stderr
    judged = json.loads(passed.stdout)
    assert [row["passed"] for row in judged["rows"]] == [True] * 6
    assert judged["commit"] == "c0ffee"  # judging again keeps the commit whose run made the artifacts

    (folder / mvp3_rows.PERF).unlink()
    failed = subprocess.run(command[:-1], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert "5  gates          FAIL    perf-run.json: missing" in failed.stdout
    assert "mvp3: 5 of 6 acceptances PASS" in failed.stdout


def test_the_design_step_reads_the_drift_and_the_visual_report() -> None:
    diff = (
        "diff -ru console/src/generated/mui-theme.json /tmp/x/mui-theme.json\n--- a\n+++ b\n"
        "Only in console/src/generated: shadcn.css\n"
    )
    assert drifted_files(diff) == ["console/src/generated/mui-theme.json", "console/src/generated/shadcn.css"]
    assert drifted_files("npm ERR! missing") == ["npm ERR! missing"]
    report = 'Running 12 tests\n{"stats": {"expected": 11, "unexpected": 1, "flaky": 0}, "suites": []}'
    assert visual_counts(report) == {"passed": 11, "failed": 1}
    assert visual_counts("Error: no chromium")["failed"] == 1
