"""The rollback drill: each of the three rollbacks reaches two running proxy replicas within 5 s, and
no decision event is lost on the way.

1. ``symphony flags --traffic-split 0``: the champion alone.
2. ``symphony flags --learner off``: the champion alone (and the engine publishes nothing).
3. The champion policy file reverted (what reverting a promotion's commit does to the checkout):
   every replica serves the previous version again, without a restart.

Each is timed from the command (or the file's write) to the first moment both replicas answer
only as rolled back, over 20 requests each; then undone, and seen undone, before the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from symphony.keys import CHALLENGER_KEY
from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack

MESSAGES = [{"role": "user", "content": "hi"}]
CHAMPION_FILE = Path(__file__).parents[2] / "policies" / "champion.json"
WITHIN_S = 5.0
PROBES = 20


ANSWERED: list[str] = []  # every decision id an answer carried, to hold against the event stream


def decisions(url: str, key: str) -> list[dict[str, Any]]:
    """``PROBES`` routed requests' decisions, as ``/v1/route/execute`` answers them."""
    with httpx.Client(timeout=10, headers={"authorization": f"Bearer {key}"}) as client:
        body = {"task": "chat", "messages": MESSAGES, "max_tokens": 4}
        answers = [client.post(f"{url}/v1/route/execute", json=body) for _ in range(PROBES)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    found = [a.json()["decision"] for a in answers]
    ANSWERED.extend(d["decision_id"] for d in found)
    return found


def seconds_until(urls: list[str], key: str, holds: Callable[[dict[str, Any]], bool]) -> float:
    """From now until the start of the first probe round in which every replica's decisions all
    satisfy ``holds`` (20 in a row each: by then the change had reached it); fails after 3 x WITHIN_S."""
    started = time.monotonic()
    while (round_start := time.monotonic()) - started < 3 * WITHIN_S:
        if all(all(holds(d) for d in decisions(url, key)) for url in urls):
            return round_start - started
    raise AssertionError("the replicas never all served as expected")


def champion_version(version: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a decision the champion drew was drawn by ``version`` of it."""
    return lambda decision: decision["policy"] != "champion" or decision["policy_version"] == version


def flags(server: RedisServer, *args: str) -> None:
    env = {**os.environ, "REDIS_URL": server.url}
    subprocess.run([sys.executable, "-m", "cli", "flags", *args], env=env, check=True, capture_output=True)


def test_each_rollback_reaches_two_replicas_within_five_seconds_and_loses_nothing(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    policy_file = tmp_path / "champion.json"
    original = CHAMPION_FILE.read_text()
    policy_file.write_text(original)
    weights = {"grok/grok-3-mini": 1.0, "deepseek/deepseek-chat": 1.0}
    redis_client.set(CHALLENGER_KEY, orjson.dumps({"version": "drill-1", "weights": weights}))

    def champion_only(decision: dict[str, Any]) -> bool:
        return bool(decision["policy"] == "champion")

    with ProxyStack(redis_server, traffic_split=0.5, policy_file=policy_file) as stack:
        urls = [stack.url, stack.add_replica().url]

        def challenger_serves() -> None:
            for url in urls:
                assert any(d["policy"] == "challenger" for d in decisions(url, stack.key)), url

        challenger_serves()
        took = {}
        for name, args in (
            ("traffic_split=0", ("--traffic-split", "0")),
            ("learner off", ("--learner", "off")),
        ):
            flags(redis_server, *args)
            took[name] = seconds_until(urls, stack.key, champion_only)
            flags(redis_server, "--reset")
            time.sleep(1.5)  # one poll of the feed: the challenger's share is back
            challenger_serves()

        # A promotion merged, then reverted: the file changes under the running replicas.
        promoted = json.loads(original) | {"version": "drill-promoted"}
        policy_file.write_text(json.dumps(promoted))
        seconds_until(
            urls, stack.key, lambda d: d["policy"] != "champion" or d["policy_version"] == "drill-promoted"
        )
        policy_file.write_text(original)
        previous = json.loads(original)["version"]
        took["champion reverted"] = seconds_until(
            urls, stack.key, lambda d: d["policy"] != "champion" or d["policy_version"] == previous
        )
        print("rollback took", {name: f"{s:.2f} s" for name, s in took.items()})
        assert all(s < WITHIN_S for s in took.values()), took
        events = stack.events()

    ids = [d.decision_id for d in events.decisions]
    assert sorted(ids) == sorted(ANSWERED)  # every answered request's decision, once, nothing else
