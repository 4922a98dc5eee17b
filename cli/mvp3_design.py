"""The design-system step of ``symphony mvp3-validate``: the console's checks run, their results kept.

- the tokens drift check (``just tokens-check``): the generated MUI theme, Tailwind ``@theme`` and
  shadcn variables must be what ``tokens.json`` generates; the files that differ are kept;
- Lighthouse's accessibility score of every primary view, light and dark (``just a11y-audit``,
  its HTML reports beside the scores in ``folder/a11y/``);
- the visual tests against the committed, approved baselines and the test that one token reaches
  both an MUI and a shadcn component (Playwright in Chromium; a baseline is never updated here).

Written to ``folder/design.json`` for ``cli.mvp3_rows.design`` to judge.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Say = Callable[[str], None]
VISUAL_TESTS = ("tests/visual.spec.ts", "tests/tokens.spec.ts")
_DRIFTED = re.compile(r"^(?:diff -ru (\S+) |Only in (\S+): (\S+))", re.M)


def just() -> str:
    """The ``just`` installed beside this Python (the venv's), whatever the PATH holds."""
    return str(Path(sys.executable).parent / "just")


def console_deps() -> None:
    """The console's Node packages (``just console-deps``: ``npm ci`` when the lockfile changed)."""
    subprocess.run([just(), "console-deps"], check=True, stdout=subprocess.DEVNULL)


def run_design(folder: Path, say: Say) -> None:
    console_deps()
    say("design: the tokens drift check")
    drift = subprocess.run([just(), "tokens-check"], capture_output=True, text=True, check=False)
    say("design: Lighthouse accessibility on every view")
    a11y = folder / "a11y"
    audit = subprocess.run(
        [just(), "a11y-audit"],
        env={**os.environ, "OUT": str(a11y.resolve())},
        capture_output=True,
        text=True,
        check=False,
    )
    say("design: the visual tests against the approved baselines")
    visual = subprocess.run(
        ["npx", "playwright", "test", *VISUAL_TESTS, "--reporter=json"],
        cwd="console",
        capture_output=True,
        text=True,
        check=False,
    )
    body = {
        "tokens_drift": drifted_files(drift.stdout + drift.stderr) if drift.returncode else [],
        "lighthouse": _scores(a11y / "scores.json"),
        "lighthouse_exit": audit.returncode,
        "visual": visual_counts(visual.stdout),
    }
    (folder / "design.json").write_text(json.dumps(body, indent=2) + "\n")


def drifted_files(diff: str) -> list[str]:
    """The generated files ``diff -ru`` names as differing or missing (the whole output if it names none)."""
    names = [changed or f"{where}/{name}" for changed, where, name in _DRIFTED.findall(diff)]
    return names or [diff.strip()[-300:] or "tokens-check failed"]


def _scores(path: Path) -> dict[str, float]:
    try:
        scores = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(view): float(score) for view, score in scores.items()}


def visual_counts(report: str) -> dict[str, Any]:
    """Passed and failed from Playwright's JSON report (``stats``); a run without one failed."""
    try:
        stats = json.loads(report[report.index("{") :])["stats"]
    except (ValueError, KeyError):
        return {"passed": 0, "failed": 1, "error": report.strip()[-300:] or "no report"}
    # A test that passed only on a retry is a failure until its cause is found.
    return {"passed": int(stats["expected"]), "failed": int(stats["unexpected"]) + int(stats.get("flaky", 0))}
