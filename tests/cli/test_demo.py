"""The demo's report: quota headroom worked out from the latest decision's snapshot and the quota policy."""

from __future__ import annotations

import json
from pathlib import Path

from cli.demo import with_headroom
from symphony.engine_client import QueryResult
from symphony.quotas import load_quota_policy

POLICY_FILE = Path(__file__).parents[2] / "policies" / "quotas.v1.json"


def test_headroom_is_the_smallest_share_left_of_a_cap() -> None:
    caps = json.loads(POLICY_FILE.read_text())["providers"]["openai"]["caps"]
    rpm, tpm = caps["requests"]["minute"], caps["tokens"]["minute"]
    snapshot = {
        "openai requests per minute": rpm * 0.9,
        "openai tokens per minute": tpm * 0.25,  # the tightest
        "app:dev usd_micros per day": 1.0,  # no cap of the policy: not counted
    }
    summary = QueryResult(
        ["provider", "model", "requests", "quota_remaining"],
        [["openai", "gpt-4o-mini", 3, snapshot], ["anthropic", "claude-sonnet-4-5", 2, {}]],
    )
    result = with_headroom(summary, load_quota_policy(POLICY_FILE))
    assert result.columns == ["provider", "model", "requests", "quota_headroom", "tightest_limit"]
    assert result.rows == [
        ["openai", "gpt-4o-mini", 3, 0.25, "openai tokens per minute"],
        ["anthropic", "claude-sonnet-4-5", 2, None, None],
    ]
