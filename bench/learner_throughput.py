"""Events per second through the ingest flow with the learner branch, beside the same flow without it.

One set of events is generated for the whole run and used by every scenario: the
proxy's traffic (``flowbench.MIX``: per request a decision, a usage per attempt,
1 in 20 falling back after a 429, and feedback for 1 request in 5) over
``TASKS`` and ``flowbench.ARMS``, one request every ``REQUEST_EVERY_MS`` of event
time. A feedback comes ``FEEDBACK_DELAY_S`` after its request (event time, and as
far down the stream), so after its decision and usage; a feedback due after the
last request is never sent, and the 4 requests in 5 without one never get any: the
learner holds those as pending, as it would in production.

After an uncounted warm-up of both flows, each repeat (``--repeats``, 3 by default;
the order of the scenarios is reversed on odd repeats) measures:

- ``ingest``, the baseline: ``dataflows.ingest.build_flow(source, sink)``, the stream
  of a fresh bundled Redis into chDB, no quotas or learner branch, 1 worker;
- ``ingest + learner``: the same flow with the learner branch as the engine builds
  it (``build_flow(..., learner=(champion, ChallengerSink))``: the join in event
  time, River updates, the challenger published to the same Redis);
- ``learner step alone``: ``LearnerState.add`` over the same events as parsed
  models, in the batches the flow hands it (per shard, up to 2,000 entries, in the
  order ``validate`` emits them), no Bytewax, no Redis, no ClickHouse.

A flow's time runs from its start until it returns: every row in ClickHouse (then
checked by a query) and every branch done with every event. With ``--recovery``
both flows run with Bytewax recovery as the engine does (a snapshot every epoch of
``EPOCH_INTERVAL``, which pickles the learner's whole state). The report gives the
median over the repeats, the range (min-max), the learner flow's throughput as a
share of the baseline's, the cost per event the branch adds beside the step's own,
and where the step's time goes (one more pass, timed per part). Every run uses the
engine's garbage-collector tuning (``symphony.gc_tuning.tune_gc``).

``--smoke``: a few seconds at tiny sizes (3,000 events, one repeat); exits non-zero
when a figure is missing or a check fails.

    .venv/bin/python bench/learner_throughput.py                    # 200k events, 3 repeats
    .venv/bin/python bench/learner_throughput.py --events 100000 --repeats 5 --json
    .venv/bin/python bench/learner_throughput.py --recovery         # both flows with recovery on
    .venv/bin/python bench/learner_throughput.py --smoke
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bytewax.operators
import orjson
from bytewax.dataflow import Dataflow
from flowbench import (
    ARMS,
    MIX,
    SHARDS,
    TABLES,
    Counter,
    CountingWriter,
    check_rows,
    drop_tables_and_close,
    fill,
    per_table,
    request_events,
    run_until_written,
    say,
    shard,
)
from spread import Spread

from dataflows.ingest import AnyEvent, build_flow
from dataflows.learner import LearnerState
from dataflows.redis_source import RedisStreamSource
from sinks.clickhouse import DEAD_LETTERS, ClickHouseSink
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore
from sinks.redis_state import ChallengerSink
from symphony import clock
from symphony.catalog import Policy, load_catalog, load_policy
from symphony.events import Event, Feedback, new_id
from symphony.flags import Flags
from symphony.gc_tuning import GC_THRESHOLDS, tune_gc
from symphony.keys import CHALLENGER_KEY
from symphony.redis_client import sync_redis
from symphony.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[1]
CHAMPION = REPO / "policies" / "champion.json"
TASKS = ["chat", "code", "summarise", "search"]
REQUEST_EVERY_MS = 10  # 100 requests/s of event time
FEEDBACK_DELAY_S = (2, 60)  # a feedback comes this long after its request, spread evenly
BATCH = 2000  # entries per read of a shard (RedisStreamSource's default batch size)
LABEL = "bench-learner"
WARM_UP = 5_000  # events through each flow before the repeats (chDB's first inserts are slower)
SCENARIOS = ("ingest", "ingest + learner", "learner step alone")
BASELINE, LEARNER_FLOW, STEP = SCENARIOS
TYPE_ORDER = {kind: index for index, kind in enumerate(TABLES)}  # validate's order in a batch


def traffic(base: int) -> Iterator[list[Event]]:
    """Per request, its decision and usage, and the feedback of earlier requests that is due by then."""
    late: list[tuple[int, int, Feedback]] = []  # (due, request, feedback)
    low, high = FEEDBACK_DELAY_S
    for i in itertools.count():
        ts = base + i * REQUEST_EVERY_MS
        due: list[Event] = []
        while late and late[0][0] <= ts:
            due.append(heapq.heappop(late)[2])
        *events, last = request_events(i, ts, LABEL, task=TASKS[i % len(TASKS)])
        if isinstance(last, Feedback):
            at = ts + 1000 * low + (i * 7919) % (1000 * (high - low) + 1)
            heapq.heappush(late, (at, i, last.model_copy(update={"ts": at, "event_id": new_id(at)})))
        else:
            events.append(last)
        yield due + events


def generate(events: int) -> list[Event]:
    """About ``events`` events of ``traffic``, in the order the proxy writes them."""
    generated: list[Event] = []
    for request in traffic(clock.wall_ms() - 3_600_000):
        if len(generated) >= events:
            break
        generated += request
    return generated


def flow_batches(events: Sequence[Event]) -> list[list[AnyEvent]]:
    """The batches the learner branch gets from the flow: per shard up to ``BATCH`` entries, the shards
    in turn, each batch's decisions first, then usage, then feedback (as ``validate`` emits them)."""
    shards: list[list[AnyEvent]] = [[] for _ in range(SHARDS)]
    for event in events:
        shards[shard(event)].append(event)  # type: ignore[arg-type]  # every generated event is one of them
    chunks = [[entries[i : i + BATCH] for i in range(0, len(entries), BATCH)] for entries in shards]
    batches = []
    for turn in itertools.zip_longest(*chunks):
        for chunk in turn:
            if chunk:
                batches.append(sorted(chunk, key=lambda event: TYPE_ORDER[event.type]))
    return batches


def relabel(events: list[Event], label: str) -> list[Event]:
    """The same events for one flow run: ``label`` as their app (source for feedback), new event ids.

    ClickHouse's tables collapse rows by (ts, event_id), so each run's rows must be its own
    to be counted; the decision ids, and so the shards and batches, stay the same.
    """
    return [
        event.model_copy(
            update={"event_id": new_id(event.ts), "source" if isinstance(event, Feedback) else "app": label}
        )
        for event in events
    ]


# --- the flows ------------------------------------------------------------------------------------


def flow(
    redis_url: str, store: ClickHouseStore, policy: Policy, learner: bool
) -> Callable[[Counter, threading.Event], Dataflow]:
    def build(counter: Counter, stop: threading.Event) -> Dataflow:
        source = RedisStreamSource(redis_url, SHARDS, batch_size=BATCH, stop=stop)
        sink = ClickHouseSink(CountingWriter(store, counter), stop=stop)
        branch = (policy, ChallengerSink(redis_url, Flags(learner_enabled=True, traffic_split=0.05)))
        return build_flow(source, sink, None, branch if learner else None)

    return build


@dataclass(frozen=True)
class Run:
    scenario: str
    repeat: int
    events: int
    seconds: float  # the flow's start to its return; for the step alone, the calls of add
    events_per_s: float
    written_s: float | None = None  # the flow's start to the last row in ClickHouse
    challenger: str | None = None  # the version in Redis after the learner flow
    published: int | None = None  # challengers the step alone returned
    snapshots: int | None = None  # Bytewax snapshots of the learner's state during the flow
    snapshot_s: float | None = None  # the time they took


class SnapshotTimer:
    """Counts and times the snapshots of Bytewax's ``stateful_map`` state (the learner's ``LearnerState``).

    Bytewax calls ``snapshot`` (a ``copy.deepcopy`` of the state) for every key a step touched,
    at the close of every epoch, recovery or not. This wraps that method of Bytewax's logic class
    (a private name: when it is gone, nothing is counted and the figures are None).
    """

    def __init__(self) -> None:
        self.calls = 0
        self.seconds = 0.0
        self._logic: Any = getattr(bytewax.operators, "_StatefulFlatMapLogic", None)
        self._original: Any = None

    def __enter__(self) -> SnapshotTimer:
        if self._logic is None or not hasattr(self._logic, "snapshot"):
            return self
        original = self._original = self._logic.snapshot

        def snapshot(logic: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(logic)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - started

        self._logic.snapshot = snapshot
        return self

    def __exit__(self, *exc: object) -> None:
        if self._original is not None:
            self._logic.snapshot = self._original

    @property
    def counted(self) -> bool:
        return self._original is not None


def measure_flow(
    name: str,
    repeat: int,
    events: list[Event],
    redis_url: str,
    store: ClickHouseStore,
    policy: Policy,
    recovery_dir: Path | None,
) -> Run:
    learner = name == LEARNER_FLOW
    label = f"{LABEL}-{repeat}-{SCENARIOS.index(name)}"
    events = relabel(events, label)
    chunks = (events[i : i + 1000] for i in range(0, len(events), 1000))
    sent = fill(redis_url, chunks, len(events))  # empties Redis first: no challenger, no flags
    counter = Counter(dict(sent))
    with SnapshotTimer() as snapshots:
        run = run_until_written(
            flow(redis_url, store, policy, learner), counter, recovery_dir=recovery_dir, name=name
        )
    check_rows(store, label, sent, {table: table for table in TABLES.values()})
    dead = int(store.query(f"SELECT count() FROM {DEAD_LETTERS}").rows[0][0])
    if dead:
        raise RuntimeError(f"{name}: {dead} dead letters")
    challenger = None
    if learner:
        client = sync_redis(redis_url)
        try:
            payload = client.get(CHALLENGER_KEY)
        finally:
            client.close()
        if payload is None:
            raise RuntimeError(f"{name}: no challenger at {CHALLENGER_KEY} after the run")
        published = orjson.loads(payload)
        # At most one publication a minute of event time: the first may come before every task learned.
        if not published["tasks"] or not set(published["tasks"]) <= set(TASKS):
            raise RuntimeError(f"{name}: the challenger has tasks {sorted(published['tasks'])}, not of ours")
        challenger = str(published["version"])
    total = sum(sent.values())
    counted = snapshots.counted and learner
    say(
        f"   {name}: {total} events in {run.drained_s:.2f}s = {total / run.drained_s:,.0f}/s"
        f" (last row written at {run.written_s:.2f}s"
        + (f"; {snapshots.calls} state snapshots, {snapshots.seconds:.2f}s)" if counted else ")")
    )
    return Run(
        name,
        repeat,
        total,
        run.drained_s,
        total / run.drained_s,
        run.written_s,
        challenger,
        snapshots=snapshots.calls if counted else None,
        snapshot_s=snapshots.seconds if counted else None,
    )


def measure_step(repeat: int, batches: list[list[AnyEvent]], policy: Policy) -> tuple[Run, LearnerState]:
    state = LearnerState()
    published = 0
    started = time.perf_counter()
    for batch in batches:
        published += len(state.add(batch, policy))
    seconds = time.perf_counter() - started
    total = sum(len(batch) for batch in batches)
    if not state.learned or not published:
        raise RuntimeError(f"{STEP}: learned {state.learned} decisions, published {published} challengers")
    say(f"   {STEP}: {total} events in {seconds:.2f}s = {total / seconds:,.0f}/s")
    return Run(STEP, repeat, total, seconds, total / seconds, published=published), state


@dataclass
class Breakdown:
    """Where the step's time goes, from one more pass with its parts timed."""

    seconds: float = 0.0
    time_out_s: float = 0.0  # LearnerState._time_out: a scan of every pending and done decision per batch
    river_s: float = 0.0  # ArmEstimates.learn: the River update of a learned decision
    publish_s: float = 0.0  # the challenger built and encoded
    batches: int = 0
    learned: int = 0
    pending: int = 0  # decisions still waiting at the end (most never get feedback)
    done: int = 0  # learned decisions remembered to ignore their late events
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def rest_s(self) -> float:
        """The join by decision_id, the completeness check and the utility."""
        return self.seconds - self.time_out_s - self.river_s - self.publish_s


def timed(method: Callable[..., Any], into: list[float], calls: list[int]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            into[0] += time.perf_counter() - started
            calls[0] += 1

    return call


def breakdown(batches: list[list[AnyEvent]], policy: Policy) -> Breakdown:
    import dataflows.learner as learner_module

    state = LearnerState()
    time_out, river, publish = [0.0], [0.0], [0.0]
    time_out_calls, river_calls, publish_calls = [0], [0], [0]
    state._time_out = timed(state._time_out, time_out, time_out_calls)  # type: ignore[method-assign]
    state.estimates.learn = timed(state.estimates.learn, river, river_calls)  # type: ignore[method-assign]
    original = learner_module.challenger_json
    learner_module.challenger_json = timed(original, publish, publish_calls)
    try:
        started = time.perf_counter()
        for batch in batches:
            state.add(batch, policy)
        seconds = time.perf_counter() - started
    finally:
        learner_module.challenger_json = original
    return Breakdown(
        seconds=seconds,
        time_out_s=time_out[0],
        river_s=river[0],
        publish_s=publish[0],
        batches=len(batches),
        learned=state.learned,
        pending=len(state.pending),
        done=len(state.done),
        calls={"time_out": time_out_calls[0], "river": river_calls[0], "publish": publish_calls[0]},
    )


# --- the run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    scenario: str
    repeats: int
    events_per_s: Spread
    seconds: Spread
    us_per_event: float | None  # at the median throughput
    vs_baseline: Spread  # per repeat: this scenario's throughput over the baseline's in the same repeat
    snapshots: Spread  # Bytewax snapshots of the learner's state per run
    snapshot_share: Spread  # the share of the run's time they took


def summarize(runs: list[Run]) -> list[Summary]:
    baseline = {run.repeat: run.events_per_s for run in runs if run.scenario == BASELINE}
    summaries = []
    for name in SCENARIOS:
        group = [run for run in runs if run.scenario == name]
        rate = Spread.of([run.events_per_s for run in group])
        summaries.append(
            Summary(
                scenario=name,
                repeats=len(group),
                events_per_s=rate,
                seconds=Spread.of([run.seconds for run in group]),
                us_per_event=1e6 / rate.median if rate.median else None,
                vs_baseline=Spread.of(
                    [run.events_per_s / baseline[run.repeat] for run in group if run.repeat in baseline]
                ),
                snapshots=Spread.of([run.snapshots for run in group]),
                snapshot_share=Spread.of(
                    [run.snapshot_s / run.seconds if run.snapshot_s is not None else None for run in group]
                ),
            )
        )
    return summaries


def order_of(repeat: int) -> list[str]:
    """The scenarios in their forward order on even repeats, reversed on odd ones."""
    return list(SCENARIOS) if repeat % 2 == 0 else list(reversed(SCENARIOS))


def run_all(events: list[Event], repeats: int, workdir: Path, recovery: bool) -> tuple[list[Run], Breakdown]:
    policy = load_policy(CHAMPION, load_catalog())
    batches = flow_batches(events)
    server = RedisServer(port=0, data_dir=workdir / "redis", persist=False).start()
    store = ClickHouseStore.connect(f"chdb://{workdir / 'chdb'}", log_dir=workdir / "logs")
    runs: list[Run] = []
    try:
        migrate(store)
        warm_up = events[:WARM_UP]
        say(f"warm-up: {len(warm_up)} events through both flows, not counted")
        for name in (BASELINE, LEARNER_FLOW):
            measure_flow(name, -1, warm_up, server.url, store, policy, None)
        for repeat in range(repeats):
            say(f"repeat {repeat + 1} of {repeats}; load average {os.getloadavg()}")
            for name in order_of(repeat):
                if name == STEP:
                    runs.append(measure_step(repeat, batches, policy)[0])
                    continue
                recovery_dir = workdir / f"recovery-{repeat}-{SCENARIOS.index(name)}" if recovery else None
                runs.append(measure_flow(name, repeat, events, server.url, store, policy, recovery_dir))
        say("where the learner step's time goes: one more pass, its parts timed")
        parts = breakdown(batches, policy)
    finally:
        drop_tables_and_close(store)
        server.stop()
    return runs, parts


def figures_missing(summaries: list[Summary], runs: list[Run]) -> list[str]:
    missing = [
        f"{s.scenario}: {label}"
        for s in summaries
        for label, value in (("events/s", s.events_per_s.median), ("vs baseline", s.vs_baseline.median))
        if value is None or value <= 0
    ]
    learner_runs = [run for run in runs if run.scenario == LEARNER_FLOW]
    missing += [f"repeat {run.repeat}: challenger" for run in learner_runs if not run.challenger]
    return missing


# --- report ---------------------------------------------------------------------------------------


def _rate(spread: Spread) -> str:
    if spread.median is None or spread.low is None or spread.high is None:
        return f"{'-':>9} {'-':>19}"
    return f"{spread.median:>9,.0f} {f'{spread.low:,.0f}-{spread.high:,.0f}':>19}"


def render(meta: dict[str, Any], summaries: list[Summary], parts: Breakdown) -> str:
    lines = [
        f"events: {meta['events']} ({meta['decisions']} decisions, {meta['usage']} usage,"
        f" {meta['feedback']} feedback); {len(TASKS)} tasks x {len(ARMS)} arms; {MIX}",
        f"  one request every {REQUEST_EVERY_MS} ms of event time; feedback {FEEDBACK_DELAY_S[0]}-"
        f"{FEEDBACK_DELAY_S[1]} s after its request, {meta['feedback_never']} of"
        f" {meta['requests']} requests never get any; 1 worker;"
        f" recovery {'on' if meta['recovery'] else 'off'}",
        "",
        f"{'scenario':<20} {'repeats':>7} {'events/s':>9} {'range (min-max)':>19} {'spread':>7}"
        f" {'us/event':>9} {'vs ingest':>10}",
    ]
    for s in summaries:
        spread = s.events_per_s.relative
        ratio = s.vs_baseline
        lines.append(
            f"{s.scenario:<20} {s.repeats:>7} {_rate(s.events_per_s)}"
            f" {'-' if spread is None else f'{spread:.0%}':>7}"
            f" {'-' if s.us_per_event is None else f'{s.us_per_event:.1f}':>9}"
            f" {'-' if ratio.median is None else f'{ratio.median:.2f}x':>10}"
            + (
                f" ({ratio.low:.2f}-{ratio.high:.2f})"
                if ratio.low is not None and ratio.high is not None and s.scenario != BASELINE
                else ""
            )
        )
    by_name = {s.scenario: s for s in summaries}
    base, flow_cost, step = (by_name[name].us_per_event for name in SCENARIOS)
    if base is not None and flow_cost is not None and step is not None:
        added = flow_cost - base
        lines += [
            "",
            f"the learner branch adds {added:.1f} us per event to the flow ({base:.1f} -> {flow_cost:.1f});"
            f" the step alone takes {step:.1f} us per event"
            + (f" ({step / added:.0%} of what the branch adds)" if added > 0 else ""),
        ]
    snapshots, share_of_run = by_name[LEARNER_FLOW].snapshots, by_name[LEARNER_FLOW].snapshot_share
    if snapshots.median is not None and share_of_run.median is not None:
        low, high = share_of_run.low or 0.0, share_of_run.high or 0.0
        lines.append(
            f"in the learner flow, Bytewax snapshots the learner's state (a deepcopy at every epoch's close,"
            f" recovery or not) {snapshots.median:.0f} times a run: {share_of_run.median:.0%} of its time"
            f" ({low:.0%}-{high:.0%})"
        )
    if parts.seconds > 0:
        share = {
            "join, completeness, utility": parts.rest_s,
            f"time-out scans ({parts.calls['time_out']} batches)": parts.time_out_s,
            f"River updates ({parts.calls['river']} learned)": parts.river_s,
            f"challenger built ({parts.calls['publish']} published)": parts.publish_s,
        }
        lines += [
            f"learner step ({parts.seconds:.2f}s over {meta['events']} events, one pass with its parts timed;"
            f" ends with {parts.pending} pending and {parts.done} done decisions held):",
            *(f"  {name:<38} {secs:>7.3f}s {secs / parts.seconds:>5.0%}" for name, secs in share.items()),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000, help="events generated (and sent per flow)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of every scenario (at least 3)")
    parser.add_argument("--recovery", action="store_true", help="both flows with Bytewax recovery on")
    parser.add_argument("--smoke", action="store_true", help="3,000 events, 1 repeat; exit 1 on a failure")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.repeats = 3_000, 1
    elif args.repeats < 3:
        parser.error("--repeats: a full run needs at least 3 (--smoke for a quick check)")
    say(f"load average before: {os.getloadavg()}")
    tune_gc()  # as the engine does; every scenario runs with it
    say(f"garbage collector thresholds {GC_THRESHOLDS} (the engine's), start-up objects frozen")
    try:
        events = generate(args.events)
        counts = per_table(events)
        requests = counts["decisions"]
        meta: dict[str, Any] = {
            "events": len(events),
            **counts,
            "requests": requests,
            "feedback_never": requests - counts["feedback"],
            "tasks": TASKS,
            "arms": [f"{p}/{m}" for p, m in ARMS],
            "mix": MIX,
            "request_every_ms": REQUEST_EVERY_MS,
            "feedback_delay_s": list(FEEDBACK_DELAY_S),
            "workers": 1,
            "recovery": args.recovery,
            "repeats": args.repeats,
        }
        say(f"{len(events)} events generated: {counts}")
        with tempfile.TemporaryDirectory(prefix="symphony-bench-") as tmp:
            runs, parts = run_all(events, args.repeats, Path(tmp), args.recovery)
        summaries = summarize(runs)
        missing = figures_missing(summaries, runs)
        if missing:
            raise RuntimeError(f"figures missing: {missing}")
    except Exception as exc:
        if not args.smoke:
            raise
        say(f"SMOKE FAILED: {exc!r} ({exc})")
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "events": meta,
                    "summary": [asdict(s) for s in summaries],
                    "runs": [asdict(r) for r in runs],
                    "learner_step": {**asdict(parts), "rest_s": parts.rest_s},
                },
                indent=2,
            )
        )
    else:
        print(render(meta, summaries, parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
