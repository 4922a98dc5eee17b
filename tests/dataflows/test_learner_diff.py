"""The Learner view's policy diff on a real engine: the champion it serves against the challenger in Redis.

Expected utilities are worked out here from the champion's file and the challenger's weights (the rule
in ``learner.policy_diff``: anchor + temperature * ln(weight / best weight), clamped, 4 decimals).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import redis

from symphony.keys import CHALLENGER_KEY
from tests.engineutil import ANALYST_TOKEN, SPANS_TOKEN, Engine

POLICY_FILE = Path(__file__).parents[2] / "policies/champion.json"  # the engine's default POLICY_FILE
CHALLENGER = {
    "version": "ch-41",
    "weights": {},
    "tasks": {"code": {"anthropic/claude-sonnet-4-5": 1.0, "deepseek/deepseek-chat": 0.2}},
    "exploration": 0.05,
}


def test_the_diff_of_the_published_challenger(engine: Engine) -> None:
    engine.start()
    url, analyst = f"{engine.bare_url}/console/learner/diff", ("x", ANALYST_TOKEN)
    champion = json.loads(POLICY_FILE.read_text())
    client = redis.Redis.from_url(engine.redis_url)
    client.delete(CHALLENGER_KEY)  # the engine's learner may have published one at start

    nothing = httpx.get(url, auth=analyst).json()
    assert nothing["challenger_version"] is None and nothing["tasks"] == []
    assert nothing["champion_version"] == champion["version"] and "no challenger" in nothing["reason"]

    client.set(CHALLENGER_KEY, json.dumps(CHALLENGER))
    answer = httpx.get(url, auth=analyst)
    assert answer.status_code == 200, answer.text
    diff = answer.json()
    assert (diff["champion_version"], diff["challenger_version"]) == (champion["version"], "ch-41")
    by_task = {t["task"]: t for t in diff["tasks"]}
    assert set(by_task) == set(champion["tasks"])
    assert all(t["changes"] == [] for name, t in by_task.items() if name != "code")
    code = champion["tasks"]["code"]
    anchor = max(code.values())
    after = {arm: 0.0 for arm in code}
    after["anthropic/claude-sonnet-4-5"] = round(anchor, 4)
    after["deepseek/deepseek-chat"] = round(anchor + champion["temperature"] * math.log(0.2), 4)
    expected = [
        {"arm": arm, "before": code[arm], "after": after[arm]}
        for arm in sorted(code)
        if code[arm] != after[arm]
    ]
    assert by_task["code"]["changes"] == expected
    assert by_task["code"]["unchanged"] == len(code) - len(expected)

    assert httpx.get(url, auth=("x", SPANS_TOKEN)).status_code == 403
    client.set(CHALLENGER_KEY, b"{not json")
    malformed = httpx.get(url, auth=analyst)
    assert malformed.status_code == 409 and "cannot compare" in malformed.json()["error"]
    client.close()
