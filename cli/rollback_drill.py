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

Each is timed from the moment the change is written (the flag landing in Redis, watched while
``symphony flags`` runs; the file written back) to the end of the first round of probes
(``/v1/route/execute``, a new connection each, sent at once, so they reach every replica; each
answer names its ``replica``) in which every replica answered only as rolled back; the command's
whole run time is shown beside it. Then it is undone and seen undone before the next. Afterwards
every decision an answer carried, the load's and the probes', must be in ClickHouse exactly once.
PASS when each rollback took under ``--within`` seconds (5) on every replica and no event was lost
or doubled.
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

from cli import load
from cli.own_stack import own_stack
from cli.report import progress_printer
from symphony import clock, engine_client
from symphony.keys import CHALLENGER_KEY, FLAGS_KEY
from symphony.redis_client import sync_redis
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
            f"{verdict}  {self.name:<30} {took:>8} to {self.replicas} replica(s) after the change"
            f" (bound < {self.within_s:g} s; the command took {self.command_s:.1f} s)"
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
        """From ``started`` (default now) to the end of the first round where every replica answered,
        and all as ``holds``: an upper bound (the round before showed a replica not there yet)."""
        started = clock.monotonic() if started is None else started
        while clock.monotonic() - started < patience_s:
            by_replica = self.round()
            if len(by_replica) >= self.replicas and all(all(map(holds, d)) for d in by_replica.values()):
                return clock.monotonic() - started
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

    def flag_rollback(name: str, option: str, field: str, stored: str, holds: Holds) -> None:
        value = {"true": "on", "false": "off"}.get(stored, stored)  # as the command takes it
        with FlagsCommand(settings, option, value) as command:
            written = command.written(field, stored)
            seconds = probe.seconds_until(holds, patience, written)
        results.append(Rollback(name, seconds, probe.replicas, within_s, command.seconds))
        say(results[-1].line())

    def challenger_back() -> None:
        with FlagsCommand(settings, "--reset"):
            pass
        if not _any_round(probe, challenger_serves, patience):
            raise RuntimeError("the challenger never served again after `symphony flags --reset`")

    flag_rollback("traffic_split=0", "--traffic-split", "traffic_split", "0", champion_only)
    challenger_back()
    flag_rollback("learner off", "--learner", "learner_enabled", "false", champion_only)
    challenger_back()
    with FlagsCommand(settings, "--scheduler", "off") as command:
        written = command.written("scheduler_enabled", "false")
        seconds = _until_scheduler_enabled(settings, False, patience, written)
    results.append(Rollback("scheduler off", seconds, 1, within_s, command.seconds))
    say(results[-1].line())
    with FlagsCommand(settings, "--reset"):
        pass
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
    while clock.monotonic() - started < patience_s:
        health = httpx.get(f"{settings.scheduler_url}/health", timeout=5.0).json()
        if health.get("scheduler_enabled") is enabled:
            return clock.monotonic() - started
        time.sleep(0.1)
    return None


class FlagsCommand:
    """``symphony flags ARGS`` run as an operator runs it, in a process of its own; ``written`` is
    when its change landed in Redis (the moment every replica's next poll can see it)."""

    def __init__(self, settings: Settings, *args: str) -> None:
        self._redis_url = settings.redis_url
        self._args = args
        self.seconds = 0.0  # the command's whole run

    def __enter__(self) -> FlagsCommand:
        self._started = clock.monotonic()
        env = {**os.environ, "REDIS_URL": self._redis_url}
        command = [sys.executable, "-m", "cli", "flags", *self._args]
        self._process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        return self

    def written(self, field: str, value: str, timeout_s: float = 60.0) -> float:
        client = sync_redis(self._redis_url)
        try:
            deadline = clock.monotonic() + timeout_s
            while client.hget(FLAGS_KEY, field) != value.encode():
                if clock.monotonic() > deadline or self._process.poll() not in (None, 0):
                    raise RuntimeError(f"symphony flags {' '.join(self._args)} never set {field}={value}")
                time.sleep(0.005)
            return clock.monotonic()
        finally:
            client.close()

    def __exit__(self, *exc: object) -> None:
        _, error = self._process.communicate(timeout=120)
        self.seconds = round(clock.monotonic() - self._started, 2)
        if self._process.returncode != 0:
            raise RuntimeError(f"symphony flags {' '.join(self._args)}: {error.strip()}")


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
        client = sync_redis(settings.redis_url)
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
