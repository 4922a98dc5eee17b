"""``symphony chaos-run``: the chaos gate, each scenario against a stack of its own, PASS or FAIL.

The scenarios and their pass criteria are the ``chaos`` section of ``policies/gates.v1.json``:
faults the simulator serves per provider (429 storm, 5xx burst, slow first byte, a hanging
provider, a provider down, every provider partly failing) or an action in the middle of the
load (a Redis restart, an engine SIGKILL and its restart). One stack on the simulator runs
them in turn; each sends ``model=auto`` chat requests at the gate's rate for its duration
(``--short``: the short duration) with the stack's app key, then clears its faults, and
passes when

- at least ``min_success`` of its requests succeeded,
- their p99 latency is at most ``max_p99_ms``,
- every answered decision is in ClickHouse exactly once (the served decisions ClickHouse
  holds grew by exactly the number answered),
- the quotas are consistent: for every provider the rolling day's buckets in Redis hold exactly
  the attempts and tokens its usage events in ClickHouse settled.

Each scenario prints a PASS or FAIL line with its figures; the results are kept in
``runs/gates/chaos-run.json``. Exit status: 0 when every scenario passed, 1 otherwise,
2 for bad options or a bad gates file. With the evidence flag on (``EVIDENCE_BUNDLES``, live
through ``symphony flags --evidence``) a failed scenario gets an evidence bundle of its worst
attempt and a ticket keyed ``chaos:<scenario>`` (``evidence_for_failed_scenario``; later
failures of the same scenario comment on it).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from cli import load
from cli.gates import ARTIFACTS, GATES_FILE, ChaosGate, ChaosScenario, Check, load_gates
from cli.own_stack import own_stack
from cli.report import progress_printer
from cli.supervisor import Part, Stack
from symphony import clock, engine_client, keys
from symphony.flags import Flags
from symphony.quotas import bucket_values
from symphony.redis_client import sync_redis
from symphony.settings import Settings

SERVED_SQL = "SELECT countIf(served_by != '') FROM decisions FINAL"
TASKS = {"chat": 1.0, "code": 1.0, "summarize": 1.0, "extract": 1.0, "reasoning": 1.0}
SETTLE_S = 60.0
Say = Callable[[str], None]


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    sent: int
    succeeded: int
    p99_ms: float
    answered_in_clickhouse: int
    checks: list[Check]
    quota_mismatches: list[str]

    @property
    def passed(self) -> bool:
        return all(check.ok for check in self.checks)

    def line(self) -> str:
        figures = ", ".join(_figure(check) for check in self.checks)
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name:<20} {figures}"


def _figure(check: Check) -> str:
    return f"{check.name} {check.measured:g}" + ("" if check.ok else f" (bound {check.bound})")


def run_scenario(
    name: str,
    scenario: ChaosScenario,
    seconds: float,
    rate: float,
    stack: Stack,
    say: Say,
) -> ScenarioResult:
    settings = stack.settings
    engine = settings.engine_url_as("analyst")
    before = int(engine_client.query(engine, SERVED_SQL).scalar())
    _set_faults(settings.resolved_sim_url, scenario.faults)
    action = _start_action(scenario.action, stack, seconds / 3, say)
    try:
        traffic = load.run_load(settings.proxy_url, "", _traffic(rate, seconds, stack.dev_key), say=say)
    finally:
        if action is not None:
            action.join()
        _set_faults(settings.resolved_sim_url, {})
    _restart_dead_parts(stack, say)
    answered = _served_since(engine, before, traffic.ok)
    mismatched = quota_mismatches(settings)
    success = traffic.ok / traffic.sent if traffic.sent else 0.0
    p99 = traffic.latency_ms.get("p99", float("inf"))
    return ScenarioResult(
        name,
        traffic.sent,
        traffic.ok,
        p99,
        answered,
        [
            Check("success", success, f">= {scenario.min_success:g}", success >= scenario.min_success),
            Check("p99 ms", p99, f"<= {scenario.max_p99_ms:g}", p99 <= scenario.max_p99_ms),
            Check("in clickhouse", answered, f"== {traffic.ok}", answered == traffic.ok),
            Check("quota mismatches", len(mismatched), "== 0", not mismatched),
        ],
        mismatched,
    )


def _traffic(rate: float, seconds: float, dev_key: str | None) -> load.LoadConfig:
    return load.LoadConfig(
        rate=rate,
        duration=seconds,
        tasks=TASKS,
        apps=("chaos",),
        stream_share=0.5,
        feedback_share=0.0,
        api_key=dev_key or load.LoadConfig.api_key,
        progress_s=max(seconds, 1.0),
    )


def _set_faults(simulator_url: str, faults: dict[str, dict[str, float]]) -> None:
    httpx.delete(f"{simulator_url}/admin/faults", timeout=5).raise_for_status()
    for provider, spec in faults.items():
        httpx.put(f"{simulator_url}/admin/faults/{provider}", json=spec, timeout=5).raise_for_status()


def _start_action(action: str, stack: Stack, after_s: float, say: Say) -> threading.Thread | None:
    """The scenario's action, ``after_s`` into the load, on a thread of its own."""
    if not action:
        return None
    target = _restart_redis if action == "redis-restart" else _crash_engine
    thread = threading.Thread(target=_after, args=(after_s, target, stack, say), name=action, daemon=True)
    thread.start()
    return thread


def _after(delay_s: float, target: Callable[[Stack, Say], None], stack: Stack, say: Say) -> None:
    threading.Event().wait(delay_s)
    target(stack, say)


def _restart_redis(stack: Stack, say: Say) -> None:
    assert stack.redis is not None, "the chaos stack runs its own Redis"
    say("chaos: stopping Redis for 2 s")
    stack.redis.stop()
    threading.Event().wait(2.0)
    stack.redis.start()
    say("chaos: Redis is back")


def _crash_engine(stack: Stack, say: Say) -> None:
    """SIGKILL only: the restart is ``_restart_dead_parts``' job, on the main thread (a part started
    from this short-lived thread would get its parent-death signal when the thread ends)."""
    engine = _part(stack, "engine")
    assert engine.process is not None
    say(f"chaos: SIGKILL to the engine (pid {engine.process.pid})")
    engine.process.send_signal(signal.SIGKILL)
    engine.process.wait()


def _restart_dead_parts(stack: Stack, say: Say) -> None:
    """Supervise, as ``symphony up`` does, until every part answers its health check again."""
    deadline = clock.monotonic() + SETTLE_S
    while clock.monotonic() < deadline:
        stack.tend()
        if all(part.restart_at is None and not part.exited() and part.healthy() for part in stack.parts):
            return
        threading.Event().wait(0.2)
    say(f"chaos: a part did not come back within {SETTLE_S:g} s")


def _part(stack: Stack, name: str) -> Part:
    [part] = [part for part in stack.parts if part.name == name]
    return part


def quota_mismatches(settings: Settings) -> list[str]:
    """Where the quota buckets in Redis (the rolling day's requests and tokens) differ from what the
    usage events in ClickHouse settled: per provider while every reservation was in Redis; in total,
    less what the proxy admitted on its local limiter while Redis was down (those never reach Redis,
    by design: ``symphony_quota_local_*`` on its /metrics), once it did. The stack is fresh, so
    both sides hold everything since it started."""
    settled = {
        provider: (int(attempts), int(tokens))
        for provider, attempts, tokens in engine_client.query(
            settings.engine_url_as("analyst"),
            "SELECT provider, count(), sum(input_tokens + output_tokens) FROM usage FINAL GROUP BY provider",
        ).rows
    }
    local = _local_admissions(settings.proxy_url)
    client = sync_redis(settings.redis_url)
    try:
        counted = {p: (_day_total(client, p, "requests"), _day_total(client, p, "tokens")) for p in settled}
    finally:
        client.close()
    if local == (0, 0):
        differ = [p for p in settled if counted[p] != settled[p]]
        return [f"{p}: Redis {counted[p]}, ClickHouse {settled[p]}" for p in differ]
    in_redis, all_settled = _totals(counted.values()), _totals(settled.values())
    expected = (all_settled[0] - local[0], all_settled[1] - local[1])
    return [] if in_redis == expected else [f"all: Redis {in_redis}, ClickHouse less local {expected}"]


def _totals(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """(requests, tokens) summed over providers."""
    requests, tokens = 0, 0
    for provider_requests, provider_tokens in pairs:
        requests, tokens = requests + provider_requests, tokens + provider_tokens
    return requests, tokens


def _local_admissions(proxy_url: str) -> tuple[int, int]:
    """(grants, tokens) the proxy admitted on its local limiter, from its /metrics."""
    found = {"symphony_quota_local_grants_total": 0, "symphony_quota_local_tokens_total": 0}
    for line in httpx.get(f"{proxy_url}/metrics", timeout=5).text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = int(float(value))
    return found["symphony_quota_local_grants_total"], found["symphony_quota_local_tokens_total"]


def _day_total(client: redis.Redis, provider: str, metric: str) -> int:
    window: dict[bytes, bytes] = client.hgetall(keys.quota_window_key(provider, metric, "day"))  # type: ignore[assignment]
    return sum(bucket_values(window).values())


def _served_since(engine: str, before: int, answered: int) -> int:
    """Served decisions ClickHouse gained since ``before``, once they stop coming (or reach ``answered``)."""
    deadline = clock.monotonic() + SETTLE_S
    last, steady_since = -1, clock.monotonic()
    while clock.monotonic() < deadline:
        try:
            now = int(engine_client.query(engine, SERVED_SQL).scalar()) - before
        except engine_client.EngineError:
            now = last  # the engine may be restarting
        if now != last:
            last, steady_since = now, clock.monotonic()
        elif now >= answered and clock.monotonic() - steady_since > 2.0:
            return now  # reached and held: a duplicate would show as more
        threading.Event().wait(0.25)
    return last


def run_gate(
    gate: ChaosGate, names: Sequence[str], short: bool, var_dir: Path, say: Say
) -> list[ScenarioResult]:
    seconds = gate.short_duration_s if short else gate.duration_s
    results = []
    with own_stack(var_dir, say=say) as (_, stack):
        for name in names:
            say(f"scenario {name}: {gate.rate:g} req/s for {seconds:g} s")
            result = run_scenario(name, gate.scenarios[name], seconds, gate.rate, stack, say)
            say(result.line())
            if not result.passed and evidence_on(stack.settings):
                say(evidence_for_failed_scenario(stack.settings, name))
            results.append(result)
    return results


# The scenario's worst moment: its latest failed attempt, else its slowest (scenarios run in turn, their
# faults cleared in between, so the latest attempts are this scenario's).
WORST_ATTEMPT_SQL = (
    "SELECT decision_id FROM usage FINAL ORDER BY (status != 'ok') DESC, ts DESC, latency_ms DESC LIMIT 1"
)


def evidence_on(settings: Settings) -> bool:
    """The live ``evidence_bundles`` flag (``EVIDENCE_BUNDLES`` unless ``symphony flags`` changed it)."""
    defaults = Flags(
        settings.learner_enabled, settings.traffic_split, evidence_bundles=settings.evidence_bundles
    )
    client = sync_redis(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return defaults.merged(client.hgetall(keys.FLAGS_KEY)).evidence_bundles
    except redis.RedisError:
        return defaults.evidence_bundles
    finally:
        client.close()


def evidence_for_failed_scenario(settings: Settings, name: str) -> str:
    """Capture a failed scenario's evidence (its worst attempt's decision) and open or comment on its
    ticket, keyed ``chaos:<scenario>``; a line saying what was done, or why not."""
    try:
        rows = engine_client.query(settings.engine_url_as("analyst"), WORST_ATTEMPT_SQL).rows
        if not rows:
            return f"scenario {name}: no attempt in ClickHouse, no evidence bundle"
        request = {
            "decision_id": str(rows[0][0]),
            "trigger": "chaos_scenario",
            "fingerprint": f"chaos:{name}",
        }
        outcome = engine_client.capture_evidence(settings.engine_url_as("admin"), request)
    except engine_client.EngineError as exc:
        return f"scenario {name}: no evidence bundle ({exc})"
    tickets = outcome["tickets_opened"] + outcome["tickets_commented"]
    return f"scenario {name}: evidence {outcome['bundle']}" + (
        f", tickets {', '.join(tickets)}" if tickets else ""
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gates", type=Path, default=GATES_FILE, help=f"the gates file (default {GATES_FILE})"
    )
    parser.add_argument(
        "--scenario", action="append", metavar="NAME", help="run only these (repeat; default all)"
    )
    parser.add_argument(
        "--short", action="store_true", help="each scenario for the gate's short duration (CI)"
    )
    parser.add_argument(
        "--var-dir", type=Path, default=Path("var/chaos-run"), help="the stack's state (emptied at start)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        gate = load_gates(args.gates).chaos
        names = args.scenario or list(gate.scenarios)
        unknown = [name for name in names if name not in gate.scenarios]
        if unknown:
            known = ", ".join(gate.scenarios)
            raise ValueError(f"unknown scenario {unknown[0]!r}: the scenarios are {known}")
    except ValueError as exc:
        print(f"symphony chaos-run: {exc}", file=sys.stderr)
        return 2
    say = progress_printer()

    results = run_gate(gate, names, args.short, args.var_dir, say)
    passed = all(result.passed for result in results)
    report: dict[str, Any] = {
        "passed": passed,
        "short": args.short,
        "scenarios": [asdict(result) | {"passed": result.passed} for result in results],
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "chaos-run.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(result.line() for result in results))
        count = f"{sum(r.passed for r in results)} of {len(results)} scenarios passed"
        print(f"chaos gate: {'PASS' if passed else 'FAIL'} ({count})")
    return 0 if passed else 1
