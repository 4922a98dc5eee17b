"""The scheduler's acceptance on a short simulated workload, by hand (a few minutes on 2 cores):
`just test -m by_hand tests/system/test_scheduler_weeks.py -s`.

`symphony scheduler-weeks --days 3` runs two 3-day "weeks" (the scheduler off, then on) into a
ClickHouse of its own and prints its scheduler-report as JSON. The test then opens that ClickHouse
itself and computes the figures on its own, from the usage table and the quota policy, with SQL
and arithmetic of its own (not ``scheduler.report``): each provider's windows in each week (fixed
windows by ``intDiv(ts, length)``; Anthropic's 5h windows opened by the first use after the last
closed), utilisation = sum of min(used, budget) / sum of budgets, overflow = sum of max(used -
budget, 0). They must match the report's, and meet the goal: week two at least 90% on each of
the three windows, and at least 30% less overflow than week one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sinks.clickhouse_store import ClickHouseStore
from symphony.quotas import DAY_MS, HOUR_MS

ROOT = Path(__file__).parents[2]
DAYS = 3
pytestmark = [pytest.mark.by_hand, pytest.mark.timeout(1800)]


def run_weeks(var_dir: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "cli", "scheduler-weeks", "--days", str(DAYS), "--json"]
    command += ["--var-dir", str(var_dir), "--optimum-time-limit", "10"]
    ran = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert ran.returncode in (0, 1) and ran.stdout.startswith("{"), ran.stderr[-3000:]
    body: dict[str, Any] = json.loads(ran.stdout)
    return body


def hourly_use(store: ClickHouseStore, since: int, until: int) -> list[tuple[int, str, int]]:
    sql = f"""
        SELECT toUnixTimestamp64Milli(ts), provider, input_tokens + output_tokens FROM usage FINAL
        WHERE status = 'ok'
          AND ts >= fromUnixTimestamp64Milli({since}) AND ts < fromUnixTimestamp64Milli({until})
        ORDER BY ts
    """
    return [(int(t), str(p), int(n)) for t, p, n in store.query(sql).rows]


def windows_of(rows: list[tuple[int, str, int]], since: int, until: int) -> dict[str, list[int]]:
    """Per provider, the tokens used in each of its windows wholly inside [since, until)."""
    caps = {
        "openai": (3 * HOUR_MS, "fixed"),
        "anthropic": (5 * HOUR_MS, "first_use"),
        "gemini": (DAY_MS, "fixed"),
    }
    out: dict[str, list[int]] = {}
    for provider, (length, reset) in caps.items():
        mine = [(t, n) for t, p, n in rows if p == provider]
        if reset == "fixed":
            used: dict[int, int] = {}
            for t, n in mine:
                used[t // length] = used.get(t // length, 0) + n
            first, last = -(-since // length), until // length  # whole windows only
            out[provider] = [used.get(k, 0) for k in range(first, last)]
        else:
            opened: list[list[int]] = []  # [start, used]
            for t, n in mine:
                if not opened or t >= opened[-1][0] + length:
                    opened.append([t, 0])
                opened[-1][1] += n
            out[provider] = [u for s, u in opened if since <= s and s + length <= until]
    return out


def figures(store: ClickHouseStore, since: int, until: int, budgets: dict[str, int]) -> dict[str, Any]:
    windows = windows_of(hourly_use(store, since, until), since, until)
    share = {
        p: sum(min(u, budgets[p]) for u in used) / (budgets[p] * len(used)) for p, used in windows.items()
    }
    overflow = sum(max(u - budgets[p], 0) for p, used in windows.items() for u in used)
    return {"utilisation": share, "overflow": overflow}


def test_two_short_weeks_meet_the_goal_as_the_report_says(tmp_path: Path) -> None:
    body = run_weeks(tmp_path / "var")
    providers = json.loads((ROOT / "policies" / "quotas.v1.json").read_text())["providers"]
    budgets = {p: int(providers[p]["subscription"]["tokens"]) for p in ("openai", "anthropic", "gemini")}
    store = ClickHouseStore.connect(f"chdb://{(tmp_path / 'var' / 'clickhouse').resolve()}")
    try:
        weeks = [
            figures(store, body[k]["since_ms"], body[k]["until_ms"], budgets) for k in ("baseline", "compare")
        ]
    finally:
        store.close()
    for key, mine in zip(("baseline", "compare"), weeks, strict=True):
        reported = {p["provider"]: p for p in body[key]["providers"]}
        print(f"\n{key}: utilisation {mine['utilisation']}, overflow {mine['overflow']:,}")
        for provider, share in mine["utilisation"].items():
            assert reported[provider]["utilisation"] == pytest.approx(share, abs=1e-6)
        assert body[key]["overflow_tokens"] == mine["overflow"]  # the simulated jobs all allow a window
    print(body["acceptance"])
    for provider, share in weeks[1]["utilisation"].items():
        assert share >= 0.9, (provider, share)
    assert weeks[1]["overflow"] <= 0.7 * weeks[0]["overflow"]
    assert body["compare"]["achieved_over_optimum"] is not None
