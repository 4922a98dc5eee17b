"""``symphony mvp3-validate [--json]``: the six go-live acceptances, PASS or FAIL, from what the system did.

Runs from a fresh state, each step on a stack or store of its own, its artifacts under
``--folder`` (``runs/mvp3/``, emptied first):

1. the replay (``cli.mvp3_replay``): two simulated weeks of traffic through the proxy, with the
   learner, the SLO alerts, the reconciler and tracing live, and the promotion opened and
   merged as a pull request on a local GitHub stand-in; then the quota matrix, the quota
   windows in Redis, the trace coverage, the alerts and the span attributes are read;
2. ``symphony scheduler-weeks --json``: a baseline week without the scheduler, a week with it;
3. ``symphony perf-run --json`` and ``symphony chaos-run --json`` (every scenario, full length);
4. the console's design checks (``cli.mvp3_design``): the tokens drift check, Lighthouse on every
   view, the visual tests against the approved baselines.

Then each acceptance is judged from the artifacts alone (``cli.mvp3_rows``) against the bounds
in the gates file's ``acceptance`` section and printed as a table with the artifacts' paths;
``--judge-only`` judges the artifacts a previous run left. The exit status is 1 when any row
fails, 2 when the command cannot start. A step that fails leaves its error in
``steps.json`` and its rows FAIL; the other steps still run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli import mvp3_rows
from cli.gates import GATES_FILE, load_gates
from cli.mvp3_design import run_design
from cli.mvp3_replay import ReplayConfig, run_replay
from cli.report import progress_printer, render_table
from symphony import clock
from symphony.settings import Settings

Say = Callable[[str], None]
DEFAULT_FOLDER = Path("runs/mvp3")
COLUMNS = ("#", "acceptance", "result", "checks")


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Path, Say], None]


def _command_step(name: str, *args: str) -> Step:
    """A ``symphony`` command whose ``--json`` output is the step's artifact, whatever its exit code."""

    def run(folder: Path, say: Say) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "cli", name, *args, "--json"],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        try:
            body = json.loads(done.stdout)
        except ValueError:
            raise RuntimeError(f"`symphony {name}` exited {done.returncode} without its JSON") from None
        (folder / f"{name}.json").write_text(json.dumps(body, indent=2) + "\n")
        say(f"{name}: exit {done.returncode}")

    return Step(name, run)


def steps(minutes: float) -> list[Step]:
    replay = ReplayConfig(minutes=minutes)
    return [
        Step("replay", lambda folder, say: run_replay(replay, folder, say)),
        _command_step("scheduler-weeks"),
        _command_step("perf-run"),
        _command_step("chaos-run"),
        Step("design", run_design),
    ]


def run_steps(folder: Path, chosen: list[Step], say: Say) -> dict[str, Any]:
    """Each step in turn; a failure is recorded and the next step runs."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    record: dict[str, Any] = {}
    for step in chosen:
        say(f"== {step.name}")
        started = clock.monotonic()
        try:
            step.run(folder, say)
            error = ""
        except Exception as exc:  # the step's rows fail with its error; the other steps still run
            error = f"{type(exc).__name__}: {exc}"
            say(f"{step.name} failed: {error}")
        record[step.name] = {"seconds": round(clock.monotonic() - started, 1), "error": error}
        (folder / "steps.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def render(rows: list[mvp3_rows.Row]) -> str:
    """The table (a failed row shows its failed checks, a passed one all its figures), then the
    artifacts each row was judged from."""
    table = []
    for row in rows:
        shown = [c for c in row.checks if not c.ok] or row.checks
        checks = "; ".join(f"{c.name}: {c.figure}" for c in shown) or "no check ran"
        table.append([row.number, row.name, "PASS" if row.passed else "FAIL", checks])
    artifacts = [f"  {row.number} {row.name}: {', '.join(row.artifacts)}" for row in rows]
    passed = sum(row.passed for row in rows)
    return "\n".join(
        [
            render_table(COLUMNS, table),
            "",
            "artifacts:",
            *artifacts,
            "",
            f"mvp3: {passed} of {len(rows)} acceptances PASS",
        ]
    )


def _recorded_commit(folder: Path) -> str:
    try:
        return str(json.loads((folder / "mvp3-validate.json").read_text()).get("commit") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _commit() -> str:
    """The commit validated (``symphony release`` checks it), "" outside a repository or when the
    working tree has changes a commit does not hold."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=False
    )
    return head.stdout.strip() if head.returncode == 0 and not dirty.stdout.strip() else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--folder", type=Path, default=DEFAULT_FOLDER, help=f"the run's artifacts (default {DEFAULT_FOLDER})"
    )
    parser.add_argument(
        "--gates", type=Path, default=GATES_FILE, help=f"the bounds' file (default {GATES_FILE})"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=ReplayConfig.minutes,
        help=f"real minutes of the replay's traffic (default {ReplayConfig.minutes:g})",
    )
    parser.add_argument(
        "--judge-only", action="store_true", help="judge the artifacts already in --folder; run nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        bounds = load_gates(args.gates).acceptance
        if not 0.5 <= args.minutes <= 120:
            raise ValueError("--minutes must be from 0.5 to 120")
    except ValueError as exc:
        print(f"symphony mvp3-validate: {exc}", file=sys.stderr)
        return 2
    say = progress_printer()
    started = clock.monotonic()
    if not args.judge_only:
        run_steps(args.folder, steps(args.minutes), say)
    rows = mvp3_rows.judge_all(args.folder, bounds)
    seconds = round(clock.monotonic() - started, 1)
    result = {
        "passed": all(row.passed for row in rows),
        "seconds": seconds,
        # The commit whose run made the artifacts (``symphony release`` checks it): judging again keeps it.
        "commit": _recorded_commit(args.folder) if args.judge_only else _commit(),
        "rows": [r.to_dict() for r in rows],
    }
    args.folder.mkdir(parents=True, exist_ok=True)
    (args.folder / "mvp3-validate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else f"{render(rows)} ({seconds:g} s)")
    return 0 if result["passed"] else 1
