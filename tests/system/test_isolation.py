"""Tests do not read the developer's environment: a provider key or AUTH_DISABLED set in the shell
that runs pytest reaches neither a test's settings nor a proxy process a test starts."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.engineutil import REPO


def test_a_set_provider_key_and_auth_disabled_do_not_reach_the_tests() -> None:
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-live-must-never-be-used",
        "AUTH_DISABLED": "true",
        "TRAFFIC_SPLIT": "0.9",
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/isolation_probe.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout, run.stdout[-2000:]
