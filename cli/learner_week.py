"""``symphony learner-week``: a simulated week of traffic end to end (proxy, learner, promotion) in minutes.

It starts a stack of its own (a bundled Redis on a free port, the simulator, the
engine and the proxy on free ports, state in a fresh ``var/learner-week``) under a
simulated clock that starts at a UTC midnight ``--days`` days ago and runs
``days * 24h / --minutes`` times faster than the wall clock. Traffic goes through the
proxy at ``--rate`` requests a second of real time (``symphony load``: feedback from
the simulator's ground truth, noisy, delayed, some never given) with a task mix where
the champion's table is wrong: it routes ``reasoning`` and ``extract`` by its
``default`` table, which favours arms the truth ranks low for them. The learner in
the engine learns from every outcome and publishes its challenger, which serves
``TRAFFIC_SPLIT`` of the traffic. When the week is over and every event is in
ClickHouse, the learner's report (IPS, SNIPS, DR per 24h window and task, the
promotion verdict) is printed, kept in ``runs/learner-metrics.jsonl``, and the
promotion is planned against the champion on ``--base``: ``--promote`` commits it on
a branch and opens the pull request (``symphony learner-promote`` without
``--dry-run``); otherwise its policy diff is printed and nothing is written.
The whole run, with its timings, is kept in ``runs/learner-week.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cli import learner_promote, load, report
from cli.own_stack import own_stack
from cli.report import progress_printer
from cli.supervisor import Stack
from learner import metrics_table
from learner.promotion import WINDOW_MS
from learner.pull_request import Plan, PromotionError, Result, promote
from simulator.truth import SCENARIOS
from symphony import clock, engine_client
from symphony.catalog import load_catalog, load_policy
from symphony.keys import CHALLENGER_KEY, FLAGS_KEY
from symphony.redis_client import sync_redis
from symphony.serving import ChallengerPolicy
from symphony.settings import Settings

# Where the champion is wrong (reasoning and extract fall to its `default` table) beside a task it knows.
SCENARIO_TASKS: dict[str, float] = {"reasoning": 0.4, "extract": 0.3, "chat": 0.3}
DAY_S = 24 * 3600
INGEST_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class WeekConfig:
    days: int = 7
    minutes: float = 6.0  # real time the traffic takes
    rate: float = 40.0  # requests per second of real time
    tasks: Mapping[str, float] = field(default_factory=lambda: dict(SCENARIO_TASKS))
    feedback_share: float = 0.8
    feedback_delay_s: float = 0.5  # mean real seconds before a score comes
    seed: int = 7
    resamples: int = 1000
    scenario: str = "champion-wrong"  # the simulator's truth (``simulator.truth.SCENARIOS``)
    # Experiments: a fixed challenger ("champion" for the champion's twin, or a file), frozen for the week;
    # the challenger's share at start; the day (0 = the first) from which it serves every request.
    challenger: str | None = None
    traffic_split: float | None = None
    on_policy_from_day: int | None = None

    def __post_init__(self) -> None:
        if self.days < 2:
            raise ValueError("--days must be at least 2: promotion needs two consecutive windows")
        if not 0.5 <= self.minutes <= 120:
            raise ValueError("--minutes must be from 0.5 to 120")
        if not 0 < self.rate <= 500:
            raise ValueError("--rate must be above 0 and at most 500 requests a second")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"--scenario must be one of {', '.join(SCENARIOS)}")
        if self.traffic_split is not None and not 0 <= self.traffic_split <= 1:
            raise ValueError("--traffic-split must be from 0 to 1")
        if self.on_policy_from_day is not None and not 0 < self.on_policy_from_day < self.days:
            raise ValueError("--on-policy-from-day must be a day of the week after the first")

    @property
    def speed(self) -> float:
        """How much faster than the wall clock the simulated clock runs."""
        return self.days * DAY_S / (self.minutes * 60)

    def start_ms(self, now_ms: int) -> int:
        """The UTC midnight ``days`` days before today's, so the week is ``days`` whole windows."""
        return now_ms - now_ms % WINDOW_MS - self.days * WINDOW_MS


@dataclass
class WeekRun:
    config: WeekConfig
    start_ms: int
    traffic: load.LoadReport
    report: dict[str, Any]  # the learner's, as `symphony learner-metrics --json` prints it
    plan: Plan | None
    blocked: str  # why there is no plan, or why --promote committed nothing
    timings_s: dict[str, float]
    promotion: Result | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config) | {"tasks": dict(self.config.tasks), "speed": self.config.speed},
            "start_ms": self.start_ms,
            "load": self.traffic.to_dict(),
            "report": self.report,
            "plan": None if self.plan is None else learner_promote.as_dict(self.plan, self.promotion),
            "blocked": self.blocked,
            "timings_s": self.timings_s,
        }


def run_week(
    config: WeekConfig,
    fixed: ChallengerPolicy | None = None,
    *,
    var_dir: Path,
    args: argparse.Namespace,
    say: Callable[[str], None],
    prepare: Callable[[Settings], None] | None = None,
    inspect: Callable[[Settings, Stack], None] | None = None,
) -> WeekRun:
    """The week on a fresh stack (``fixed``: the frozen challenger of an experiment), then its promotion
    planned while the stack still runs (the plan reads the challenger published in the week's Redis).
    ``prepare`` runs before the traffic and ``inspect`` after the plan, both on the running stack."""
    timer = _Timer()
    start_ms = config.start_ms(clock.wall_ms())
    say(
        f"a simulated {config.days}-day week from {clock.utc_datetime(start_ms):%Y-%m-%d} UTC, "
        f"{config.speed:.0f}x real time ({config.minutes:g} minutes of traffic at {config.rate:g}/s)"
    )
    with own_stack(var_dir, speed=config.speed, start_ms=start_ms, say=say) as (settings, stack):
        timer.lap("stack_start")
        _set_truth(settings.resolved_sim_url, SCENARIOS[config.scenario])
        switch = _set_experiment(settings, config, fixed, start_ms)
        if prepare is not None:
            prepare(settings)
        traffic = _traffic(settings, config, stack.dev_key, say)
        timer.lap("traffic")
        if switch is not None:
            switch.cancel()
        _wait_for_events(settings, traffic, say)
        timer.lap("ingest_wait")
        say(f"evaluating the challenger over {config.days} days ({config.resamples} bootstrap resamples)")
        evaluation = engine_client.learner_metrics(
            settings.engine_url_as("analyst"), config.days + 1, config.resamples
        )
        timer.lap("evaluation")
        plan, blocked = _plan(settings, evaluation, args)
        if inspect is not None:
            inspect(settings, stack)
    return WeekRun(config, start_ms, traffic, evaluation, plan, blocked, timer.laps)


class _Timer:
    def __init__(self) -> None:
        self._last = clock.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = clock.monotonic()
        self.laps[name] = round(now - self._last, 1)
        self._last = now


def _plan(
    settings: Settings, evaluation: dict[str, Any], args: argparse.Namespace
) -> tuple[Plan | None, str]:
    try:
        challenger = learner_promote.published_challenger(settings)
        return learner_promote.plan_for(evaluation, challenger, args), ""
    except PromotionError as exc:
        return None, str(exc)


def _set_experiment(
    settings: Settings, config: WeekConfig, fixed: ChallengerPolicy | None, start_ms: int
) -> threading.Timer | None:
    """Publish and freeze ``config``'s challenger, set its share, and schedule the switch to on-policy
    (returned, to cancel if the week ends first)."""
    client = sync_redis(settings.redis_url)
    try:
        if fixed is not None:
            client.hset(FLAGS_KEY, "challenger_frozen", "true")  # before the learner's first publication
            client.set(CHALLENGER_KEY, fixed.to_json())
        if config.traffic_split is not None:
            client.hset(FLAGS_KEY, "traffic_split", str(config.traffic_split))
        if config.on_policy_from_day is None:
            return None
        at_ms = start_ms + config.on_policy_from_day * WINDOW_MS
        delay_s = (at_ms - clock.shared_clock(client).now_ms()) / 1000 / config.speed
    finally:
        client.close()
    switch = threading.Timer(max(0.0, delay_s), _serve_the_challenger_alone, args=(settings.redis_url,))
    switch.daemon = True
    switch.start()
    return switch


def _serve_the_challenger_alone(redis_url: str) -> None:
    client = sync_redis(redis_url)
    try:
        client.hset(FLAGS_KEY, "traffic_split", "1")
    finally:
        client.close()


def fixed_challenger(settings: Settings, source: str) -> ChallengerPolicy:
    """``--challenger``: ``champion`` (its twin) or a challenger file, read before anything starts."""
    if source == "champion":
        catalog = load_catalog()
        champion = load_policy(settings.policy_file, catalog)
        return ChallengerPolicy.like(champion, catalog.arms, "champion-twin")
    try:
        return ChallengerPolicy.from_json(Path(source).read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--challenger {source}: {exc}") from None


def _set_truth(simulator_url: str, scenario: Mapping[str, Mapping[str, float]]) -> None:
    for task, quality in scenario.items():
        httpx.put(f"{simulator_url}/admin/truth/{task}", json=dict(quality), timeout=5.0).raise_for_status()


def _traffic(
    settings: Settings, config: WeekConfig, dev_key: str | None, say: Callable[[str], None]
) -> load.LoadReport:
    traffic = load.LoadConfig(
        rate=config.rate,
        duration=config.minutes * 60,
        tasks=config.tasks,
        apps=("week",),
        feedback_share=config.feedback_share,
        feedback_delay_s=config.feedback_delay_s,
        seed=config.seed,
        api_key=dev_key or load.LoadConfig.api_key,
        progress_s=15.0,
    )
    return load.run_load(settings.proxy_url, settings.resolved_sim_url, traffic, say=say)


def _wait_for_events(settings: Settings, traffic: load.LoadReport, say: Callable[[str], None]) -> None:
    """Until every answered decision and every posted score is in ClickHouse."""
    say(f"waiting for {traffic.ok} decisions and {traffic.feedback_posted} scores to reach ClickHouse")
    engine = settings.engine_url_as("analyst")
    engine_client.wait_for_count(engine, "SELECT count() FROM decisions FINAL", traffic.ok, INGEST_TIMEOUT_S)
    engine_client.wait_for_count(
        engine, "SELECT count() FROM feedback FINAL", traffic.feedback_posted, INGEST_TIMEOUT_S
    )


def render(week: WeekRun) -> str:
    parts = [
        load.render_report(week.traffic),
        report.render(metrics_table.COLUMNS, metrics_table.rows(week.report), as_json=False),
        metrics_table.verdict_line(week.report),
    ]
    if week.plan is None or week.blocked:
        parts.append(f"no promotion: {week.blocked}")
    else:
        dry_run = week.promotion is None
        if dry_run:
            parts.append("the promotion (pass --promote to commit it and open its pull request):")
        parts.append(learner_promote.render(week.plan, week.promotion, as_json=False, dry_run=dry_run))
    parts.append(
        "timings (s): " + ", ".join(f"{name} {seconds:g}" for name, seconds in week.timings_s.items())
    )
    return "\n\n".join(parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = WeekConfig()
    parser.add_argument("--days", type=int, default=defaults.days, help="simulated days (default 7)")
    parser.add_argument(
        "--minutes", type=float, default=defaults.minutes, help="real minutes of traffic (default 6)"
    )
    parser.add_argument("--rate", type=float, default=defaults.rate, help="requests a second (default 40)")
    parser.add_argument(
        "--tasks",
        type=load.parse_weights,
        default=defaults.tasks,
        help="task mix, e.g. reasoning=0.4,extract=0.3,chat=0.3 (the default: the champion is wrong about"
        " the first two)",
    )
    parser.add_argument("--feedback-share", type=float, default=defaults.feedback_share)
    parser.add_argument(
        "--feedback-delay", type=float, default=defaults.feedback_delay_s, help="mean real seconds"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default=defaults.scenario,
        help="the simulator's ground truth (default champion-wrong: the champion is wrong about reasoning"
        " and extract)",
    )
    parser.add_argument("--resamples", type=int, default=defaults.resamples, help="bootstrap resamples")
    parser.add_argument(
        "--challenger",
        metavar="champion|FILE",
        help="experiments: serve this fixed challenger all week (frozen: the learner publishes nothing);"
        " `champion` is the champion's twin, for an A/A test",
    )
    parser.add_argument("--traffic-split", type=float, help="the challenger's share (default TRAFFIC_SPLIT)")
    parser.add_argument(
        "--on-policy-from-day",
        type=int,
        metavar="DAY",
        help="from this day (0 = the first) serve the challenger alone",
    )
    parser.add_argument(
        "--var-dir", type=Path, default=Path("var/learner-week"), help="the week's state (emptied at start)"
    )
    learner_promote.add_target_arguments(parser)
    parser.add_argument(
        "--promote", action="store_true", help="commit the promotion on a branch and open its pull request"
    )
    parser.add_argument("--json", action="store_true", help="print the whole run as JSON")


def command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        config = WeekConfig(
            days=args.days,
            minutes=args.minutes,
            rate=args.rate,
            tasks=args.tasks,
            feedback_share=args.feedback_share,
            feedback_delay_s=args.feedback_delay,
            seed=args.seed,
            resamples=args.resamples,
            scenario=args.scenario,
            challenger=args.challenger,
            traffic_split=args.traffic_split,
            on_policy_from_day=args.on_policy_from_day,
        )
    except ValueError as exc:
        print(f"symphony learner-week: {exc}", file=sys.stderr)
        return 2
    say = progress_printer()

    try:
        fixed = None if config.challenger is None else fixed_challenger(settings, config.challenger)
    except ValueError as exc:
        print(f"symphony learner-week: {exc}", file=sys.stderr)
        return 2
    week = run_week(config, fixed, var_dir=args.var_dir, args=args, say=say)
    if week.plan is not None and args.promote:
        try:
            week.promotion = promote(week.plan)
        except PromotionError as exc:  # not a candidate: the run is still printed and kept
            week.blocked = str(exc)
    _keep(week)
    print(json.dumps(week.to_dict(), indent=2) if args.json else render(week), flush=True)
    return 0 if week.report["promotion"]["candidate"] else 1


def _keep(week: WeekRun) -> None:
    runs = Path("runs")
    runs.mkdir(exist_ok=True)
    with (runs / "learner-metrics.jsonl").open("a") as log:
        log.write(json.dumps(week.report) + "\n")
    (runs / "learner-week.json").write_text(json.dumps(week.to_dict(), indent=2) + "\n")
