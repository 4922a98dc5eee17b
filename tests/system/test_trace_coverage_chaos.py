"""Trace coverage under chaos, by hand (`just test -m by_hand tests/system/test_trace_coverage_chaos.py`):
`symphony up`, 5 minutes of `symphony load` with faults on every provider, then `symphony trace-coverage`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from symphony.catalog import load_catalog
from tests.stackutil import stack_env, symphony_up

RATE = 15
SECONDS = 300
CHAOS = {"rate_429": 0.2, "rate_5xx": 0.1, "hang_rate": 0.03}


@pytest.mark.by_hand
@pytest.mark.timeout(SECONDS + 300)
def test_at_least_95_percent_of_decisions_have_a_trace_through_5_minutes_of_chaos(tmp_path: Path) -> None:
    stack = stack_env(tmp_path)
    with symphony_up(stack):
        sim = f"http://127.0.0.1:{stack.env['SIM_PORT']}"
        for provider in load_catalog().providers:
            httpx.put(f"{sim}/admin/faults/{provider}", json=CHAOS).raise_for_status()
        slow = {"rate_429": 0.2, "rate_5xx": 0.1, "slow_ttft_ms": 8000}  # slow first tokens too
        httpx.put(f"{sim}/admin/faults/gemini", json=slow).raise_for_status()
        command = ["load", "--rate", str(RATE), "--duration", str(SECONDS), "--stream-share", "0.5", "--json"]
        load = subprocess.run(
            [sys.executable, "-m", "cli", *command],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=SECONDS + 120,
        )
        time.sleep(5)  # a second for the proxy's batch, a second for the engine's writer, and margin
        coverage = subprocess.run(
            [sys.executable, "-m", "cli", "trace-coverage", "--window", "1h", "--json"],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert load.returncode == 0, load.stderr[-2000:]
    sent = json.loads(load.stdout)["sent"]
    assert coverage.returncode == 0, coverage.stderr
    (clickhouse,) = json.loads(coverage.stdout)
    print(f"load: {load.stdout}\ncoverage: {clickhouse}")
    assert clickhouse["decisions"] >= 0.95 * sent
    assert clickhouse["coverage"] >= 0.95
