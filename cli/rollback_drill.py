"""``symphony rollback-drill [--json]``: each live rollback applied to a running stack under load, and timed.

On a stack of its own (``--proxy-workers`` proxy processes behind one port, the challenger
serving half the requests, ``symphony load`` sending traffic through it the whole time),
each rollback is applied as an operator would apply it:

1. ``symphony flags --traffic-split 0``: every replica serves the champion alone;
2. ``symphony flags --learner off``: every replica serves the champion alone (the engine
   stops publishing);
3. ``symphony flags --scheduler off``: the dispatcher plans with the scheduler off (its
   ``/health``), so every waiting job is due at once;
4. the previous champion: the policy file written back to the version before a promotion
   (what reverting the promotion's commit does to the checkout): every replica serves that
   version, without a restart.

Each is timed from the moment the change is written (the flag, as ``symphony flags`` ends; the file)
to the start of the first round of probes (``/v1/route/execute``, a new connection each, sent at
once, so they reach every replica; each answer names its ``replica``) in which every replica
answered only as rolled back; the command's own run time is shown beside it. Then it is undone and
seen undone before the next. Afterwards every decision an answer carried, the load's and the
probes', must be in ClickHouse exactly once. PASS when each rollback took under ``--within`` seconds
(5) on every replica and no event was lost or doubled.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from cli import load
from cli.own_stack import own_stack
from cli.report import progress_printer
from symphony import clock, engine_client
from symphony.keys import CHALLENGER_KEY
from symphony.settings import Settings

Say = Callable[[str], None]
Holds = Callable[[dict[str, Any]], bool]
PROBES = 24  # per round, at once: enough new connections that every replica answers some
CHALLENGER = {
    "version": "drill-challenger",
    "weights": {"grok/grok-3-mini": 1.0, "deepseek/deepseek-chat": 1.0},
}
POLICY_SOURCE = Path("policies/champion.json")
INGEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Rollback:
    name: str
    seconds: float | None  # from the change written to every replica serving it; None: never seen
    replicas: int
    within_s: float
    command_s: float = 0.0  # the operator's command itself, before the change was written

    @property
    def passed(self) -> bool:
        return self.seconds is not None and self.seconds < self.within_s

    def line(self) -> str:
        took = "never" if self.seconds is None else f"{self.seconds:.2f} s"
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict}  {self.name:<24} {took:>8} on {self.replicas} replicas (bound < {self.within_s:g} s)"
        )


class Probe:
    """Rounds of ``/v1/route/execute`` requests, each on a new connection, and every decision they got."""

    def __init__(self, settings: Settings, key: str, replicas: int) -> None:
        self._url = f"{settings.proxy_url}/v1/route/execute"
        self._headers = {"authorization": f"Bearer {key}"}
        self.replicas = replicas
        self.answered: list[str] = []

    def round(self) -> dict[str, list[dict[str, Any]]]:
        """The decisions of one round, sent at once, by replica."""
        with ThreadPoolExecutor(PROBES) as pool:
            decisions = list(pool.map(lambda _: self._one(), range(PROBES)))
        by_replica: dict[str, list[dict[str, Any]]] = {}
        for decision in decisions:
            self.answered.append(decision["decision_id"])
            by_replica.setdefault(decision["replica"], []).append(decision)
        return by_replica

    def _one(self) -> dict[str, Any]:
        body = {"task": "chat", "messages": [{"role": "user", "content": "drill"}], "max_tokens": 4}
        with httpx.Client(timeout=10, headers=self._headers) as client:  # a new connection: any replica
            answer = client.post(self._url, json=body)
        if answer.status_code != 200:
            raise RuntimeError(f"a probe got {answer.status_code}: {answer.text[:300]}")
        decision: dict[str, Any] = answer.json()["decision"]
        return decision

    def seconds_until(self, holds: Holds, patience_s: float, started: float | None = None) -> float | None:
        """From ``started`` (default now) to the start of the first round where every replica answered,
        and all as ``holds``."""
        started = clock.monotonic() if started is None else started
        while (round_start := clock.monotonic()) - started < patience_s:
            by_replica = self.round()
            if len(by_replica) >= self.replicas and all(all(map(holds, d)) for d in by_replica.values()):
                return round_start - started
        return None


def champion_only(decision: dict[str, Any]) -> bool:
    return bool(decision["policy"] == "champion")


def challenger_serves(decision: dict[str, Any]) -> bool:
    return bool(decision["policy"] == "challenger")


def champion_version(version: str) -> Holds:
    return lambda decision: decision["policy"] != "champion" or decision["policy_version"] == version


def drill(settings: Settings, probe: Probe, within_s: float, say: Say) -> list[Rollback]:
    patience = 3 * within_s
    results = []

    def timed(name: str, apply: Callable[[], None], holds: Holds) -> None:
        started = clock.monotonic()
        apply()
        written = clock.monotonic()  # `symphony flags` writes the flag as it ends
        seconds = probe.seconds_until(holds, patience, written)
        results.append(Rollback(name, seconds, probe.replicas, within_s, round(written - started, 2)))
        say(results[-1].line())

    def undone(restore: Callable[[], None], holds: Holds) -> None:
        restore()
        if probe.seconds_until(holds, patience) is None:
            raise RuntimeError("a rollback could not be undone: the next one would prove nothing")

    def challenger_back() -> None:
        undone(lambda: _flags(settings, "--reset"), lambda d: True)
        if not _any_round(probe, challenger_serves, patience):
            raise RuntimeError("the challenger never served again after --reset")

    timed("traffic_split=0", lambda: _flags(settings, "--traffic-split", "0"), champion_only)
    challenger_back()
    timed("learner off", lambda: _flags(settings, "--learner", "off"), champion_only)
    challenger_back()
    _flags(settings, "--scheduler", "off")
    results.append(
        Rollback("scheduler off", _until_scheduler_enabled(settings, False, patience), 1, within_s)
    )
    say(results[-1].line())
    _flags(settings, "--reset")
    if _until_scheduler_enabled(settings, True, patience) is None:
        raise RuntimeError("the scheduler never planned with the flag on again")
    results.append(_previous_champion(settings, probe, within_s, patience, say))
    return results


def _previous_champion(
    settings: Settings, probe: Probe, within_s: float, patience: float, say: Say
) -> Rollback:
    """A promotion lands in the policy file, then is reverted: timed from the revert."""
    original = settings.policy_file.read_text()
    previous = json.loads(original)["version"]
    promoted = json.loads(original) | {"version": f"{previous}-promoted-in-drill"}
    settings.policy_file.write_text(json.dumps(promoted, indent=2))
    if probe.seconds_until(champion_version(promoted["version"]), patience) is None:
        raise RuntimeError("the promoted champion never reached every replica")
    started = clock.monotonic()
    settings.policy_file.write_text(original)
    seconds = probe.seconds_until(champion_version(previous), patience, started)
    result = Rollback(f"champion back to {previous}", seconds, probe.replicas, within_s)
    say(result.line())
    return result


def _any_round(probe: Probe, holds: Holds, patience_s: float) -> bool:
    started = clock.monotonic()
    while clock.monotonic() - started < patience_s:
        if any(holds(d) for decisions in probe.round().values() for d in decisions):
            return True
    return False


def _until_scheduler_enabled(
    settings: Settings, enabled: bool, patience_s: float, started: float | None = None
) -> float | None:
    """Seconds from ``started`` (default now) until the dispatcher's latest plan was made with the
    flag at ``enabled``."""
    started = clock.monotonic() if started is None else started
    while (now := clock.monotonic()) - started < patience_s:
        health = httpx.get(f"{settings.scheduler_url}/health", timeout=5.0).json()
        if health.get("scheduler_enabled") is enabled:
            return now - started
        time.sleep(0.1)
    return None


def _flags(settings: Settings, *args: str) -> None:
    env = {**os.environ, "REDIS_URL": settings.redis_url}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "flags", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"symphony flags {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class DrillRun:
    rollbacks: list[Rollback]
    load: dict[str, Any]
    decisions_answered: int
    decisions_stored: int  # rows in ClickHouse
    decisions_distinct: int
    error: str = ""

    @property
    def exactly_once(self) -> bool:
        return self.decisions_answered == self.decisions_stored == self.decisions_distinct

    @property
    def passed(self) -> bool:
        rolled_back = bool(self.rollbacks) and all(r.passed for r in self.rollbacks)
        return not self.error and self.exactly_once and rolled_back

    def to_dict(self) -> dict[str, Any]:
        rollbacks = [asdict(r) | {"passed": r.passed} for r in self.rollbacks]
        return {
            **asdict(self),
            "rollbacks": rollbacks,
            "exactly_once": self.exactly_once,
            "passed": self.passed,
        }


def run_drill(args: argparse.Namespace, say: Say) -> DrillRun:
    policy_file = args.var_dir.parent / f"{args.var_dir.name}-champion.json"
    policy_file.parent.mkdir(parents=True, exist_ok=True)
    policy_file.write_text(POLICY_SOURCE.read_text())
    os.environ.update(
        {
            "POLICY_FILE": str(policy_file.resolve()),
            "PROXY_WORKERS": str(args.proxy_workers),
            "TRAFFIC_SPLIT": "0.5",
        }
    )
    with own_stack(args.var_dir, say=say) as (settings, stack):
        client = redis.Redis.from_url(settings.redis_url)
        client.set(CHALLENGER_KEY, orjson.dumps(CHALLENGER))
        client.close()
        key = stack.dev_key or load.LoadConfig.api_key
        probe = Probe(settings, key, settings.proxy_workers)
        traffic = load.LoadConfig(rate=args.rate, duration=args.load_s, api_key=key, progress_s=15.0)
        reports: list[load.LoadReport] = []
        sender = threading.Thread(
            target=lambda: reports.append(load.run_load(settings.proxy_url, "", traffic, say=say)),
            daemon=True,
        )
        sender.start()
        error, rollbacks = "", []
        try:
            rollbacks = drill(settings, probe, args.within, say)
        except (RuntimeError, httpx.HTTPError) as exc:
            error = str(exc)
        sender.join()
        load_report = reports[0].to_dict() if reports else {}
        answered = int(load_report.get("ok", 0)) + len(probe.answered)
        rows, distinct = _stored_decisions(settings, answered, say)
    return DrillRun(rollbacks, load_report, answered, rows, distinct, error)


def _stored_decisions(settings: Settings, answered: int, say: Say) -> tuple[int, int]:
    """The rows and the distinct decisions in ClickHouse once they number ``answered`` (or the
    timeout passed): a decision stored twice would show as a row more than the distinct."""
    engine = settings.engine_url_as("analyst")
    sql = "SELECT count() FROM decisions FINAL"
    say(f"waiting for the {answered} answered decisions to reach ClickHouse")
    try:
        engine_client.wait_for_count(engine, sql, answered, INGEST_TIMEOUT_S)
    except engine_client.EngineError as exc:
        say(str(exc))
    counts = engine_client.query(engine, "SELECT count(), uniqExact(decision_id) FROM decisions FINAL").rows[
        0
    ]
    return int(counts[0]), int(counts[1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--proxy-workers", type=int, default=2, help="proxy processes behind one port (default 2)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="the load's requests a second (default 20)")
    parser.add_argument("--load-s", type=float, default=90.0, help="seconds of load (default 90)")
    parser.add_argument(
        "--within", type=float, default=5.0, help="the bound on each rollback, seconds (default 5)"
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=Path("var/rollback-drill"),
        help="the stack's state (emptied at start)",
    )
    parser.add_argument("--json", action="store_true", help="print the drill as JSON")


def command(settings: Settings, args: argparse.Namespace) -> int:
    if not 1 <= args.proxy_workers <= 8 or args.rate <= 0 or args.load_s <= 0 or args.within <= 0:
        print(
            "symphony rollback-drill: --proxy-workers is 1 to 8; --rate, --load-s, --within above 0",
            file=sys.stderr,
        )
        return 2
    run = run_drill(args, progress_printer())
    body = run.to_dict()
    artifacts = Path("runs/gates")
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "rollback-drill.json").write_text(json.dumps(body, indent=2) + "\n")
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print("\n".join(r.line() for r in run.rollbacks))
        if run.error:
            print(f"FAIL  {run.error}")
        print(
            f"decisions: {run.decisions_answered} answered, {run.decisions_stored} rows and"
            f" {run.decisions_distinct} distinct in ClickHouse"
        )
        print(f"rollback drill: {'PASS' if run.passed else 'FAIL'}")
    return 0 if run.passed else 1
