"""The ``symphony`` command: a thin layer over the library, one subcommand per job.

Every subcommand loads the settings first, so a bad environment variable stops
it before any process starts, with a message naming the variable.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from symphony import clock
from symphony.process_logging import log_to_stderr
from symphony.redis_client import sync_redis
from symphony.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    import redis

    from cli.supervisor import Stack
    from symphony.app_keys import AppKey

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _say(message: str) -> None:
    """Progress, always on stderr: stdout carries only a command's result (``--json`` pipes)."""
    print(message, file=sys.stderr, flush=True)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from cli.supervisor import running_stack

    if args.proxy_workers is not None:
        settings = settings.model_copy(update={"proxy_workers": args.proxy_workers})
    with running_stack(settings, speed=args.speed, workers=args.workers, say=_say) as stack:
        key = "any key (auth is disabled)" if stack.dev_key is None else f"the key in {settings.dev_key_file}"
        _say(
            f"\nSymphony is up. Point an OpenAI SDK at {settings.proxy_url}/v1 with {key}; "
            "Ctrl-C stops everything."
        )
        _wait_until_interrupted(stack, args.duration)
    return 0


def _wait_until_interrupted(stack: Stack, seconds: float | None) -> None:
    """Supervise the stack (restarting parts that die) until Ctrl-C, SIGTERM or ``seconds``.

    A part that cannot stay up raises ``StackError``: the stack stops and ``main`` exits 1.
    """
    from cli.supervisor import supervise

    try:
        supervise(stack, seconds)
    except KeyboardInterrupt:
        _say("\ninterrupted: stopping")


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from cli import demo, report
    from cli.supervisor import running_stack

    started = clock.monotonic()
    with running_stack(settings, speed=args.speed, say=_say) as stack:
        result = demo.run_demo(stack.settings, args.requests, stack.dev_key, say=_say)
        print(report.render(result.summary.columns, result.summary.rows, as_json=args.json), flush=True)
        if result.load.failures:
            _say(f"{len(result.load.failures)} requests failed, first: {result.load.failures[0]}")
        remaining = None if args.duration is None else max(0.0, args.duration - (clock.monotonic() - started))
        if remaining is None:
            _say("\nthe stack keeps running: Ctrl-C stops it")
        _wait_until_interrupted(stack, remaining)
    return 1 if result.load.failures or not result.summary.rows else 0


def cmd_sim(settings: Settings, args: argparse.Namespace) -> int:
    from simulator import run_simulator

    log_to_stderr(settings.log_format)
    run_simulator(settings)
    return 0


def cmd_proxy(settings: Settings, args: argparse.Namespace) -> int:
    from proxy import run_proxy

    log_to_stderr(settings.log_format)
    run_proxy(settings)
    return 0


def cmd_engine(settings: Settings, args: argparse.Namespace) -> int:
    from dataflows.engine import Cluster, parse_addresses, run_engine

    log_to_stderr(settings.log_format)
    run_engine(
        settings, workers=args.workers, cluster=Cluster(args.process_id, parse_addresses(args.addresses))
    )
    return 0


def cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    from scheduler.dispatcher import run_dispatcher

    log_to_stderr(settings.log_format)
    run_dispatcher(settings)
    return 0


def cmd_scheduler_plan(settings: Settings, args: argparse.Namespace) -> int:
    import redis

    from cli.scheduler_plan import render, scheduler_plan

    try:
        rows, totals = scheduler_plan(settings, args.horizon)
    except redis.ConnectionError as exc:
        raise StackUnavailable(
            f"cannot read the job queue: nothing answers at REDIS_URL={settings.redis_url} ({exc})"
        ) from None
    print(render(rows, totals, as_json=args.json))
    return 0


def cmd_sql(settings: Settings, args: argparse.Namespace) -> int:
    from cli import report
    from symphony import engine_client

    result = engine_client.query(settings.engine_url_as("analyst"), args.query)
    print(report.render(result.columns, result.rows, as_json=args.json))
    return 0


def cmd_trace_coverage(settings: Settings, args: argparse.Namespace) -> int:
    import redis

    from cli import report
    from cli.trace_coverage import COLUMNS, HUMAN_COLUMNS, TempoError, trace_coverage

    client = sync_redis(settings.redis_url, socket_connect_timeout=2.0)
    try:
        now_ms = clock.shared_clock(client).now_ms()
    except redis.ConnectionError:  # no shared clock to read: decisions were stamped in real time
        now_ms = clock.wall_ms()
    finally:
        client.close()
    try:
        reports = trace_coverage(
            settings.engine_url_as("analyst"),
            now_ms,
            args.window,
            tempo_url=settings.resolved_tempo_query_url,
            wall_s=clock.wall_ms() // 1000,
        )
    except TempoError as exc:
        raise StackUnavailable(str(exc)) from None
    columns = COLUMNS if args.json else HUMAN_COLUMNS
    print(report.render(columns, [r.row(human=not args.json) for r in reports], as_json=args.json))
    return 0


def cmd_quotas_matrix(settings: Settings, args: argparse.Namespace) -> int:
    import redis

    from cli import report
    from symphony.quotas import load_quota_policy
    from symphony.quotas.matrix import COLUMNS, quota_matrix

    client = sync_redis(settings.redis_url, socket_connect_timeout=2.0)
    try:
        rows = quota_matrix(client, load_quota_policy(), clock.shared_clock(client).now_ms())
    except redis.ConnectionError as exc:
        raise StackUnavailable(
            f"cannot read quotas: nothing answers at REDIS_URL={settings.redis_url} ({exc})"
        ) from None
    print(report.render(COLUMNS, [row.cells(human=not args.json) for row in rows], as_json=args.json))
    return 0


def cmd_learner_metrics(settings: Settings, args: argparse.Namespace) -> int:
    from cli import report
    from learner import metrics_table
    from symphony import engine_client

    result = engine_client.learner_metrics(settings.engine_url_as("analyst"), args.days, args.resamples)
    runs = Path("runs")
    runs.mkdir(exist_ok=True)
    with (runs / "learner-metrics.jsonl").open("a") as log:
        log.write(json.dumps(result) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(report.render(metrics_table.COLUMNS, metrics_table.rows(result), as_json=False))
        print(metrics_table.verdict_line(result))
    return 0


def _redis(settings: Settings) -> redis.Redis:
    import redis

    client = sync_redis(settings.redis_url, socket_connect_timeout=2.0)
    try:
        client.ping()
    except redis.ConnectionError:
        raise StackUnavailable(
            f"nothing answers at REDIS_URL={settings.redis_url}; start the stack (`just up`) or set REDIS_URL"
        ) from None
    return client


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    from cli.models import model_rows, render
    from symphony.catalog import load_policy, resolve_policy_path

    catalog = settings.read_catalog()
    champion = load_policy(resolve_policy_path(settings.policy_file), catalog)
    rows = model_rows(catalog, settings, os.environ, needs=args.needs, champion_tables=champion.tasks)
    print(render(rows, as_json=args.json))
    _say(f"catalog {settings.resolved_catalog_file} (version {catalog.version})")
    return 0 if any(row.served for row in rows) else 1


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from symphony.app_keys import AppKey, create_key

    template = AppKey(
        prefix="",
        app=args.app,
        created_ms=clock.wall_ms(),
        budget_usd_day=args.budget_usd_day,
        budget_usd_month=args.budget_usd_month,
        rpm=args.rpm,
        tpm=args.tpm,
        models=tuple(args.models or ()),
    )
    try:
        key, record = create_key(_redis(settings), template, catalog=settings.read_catalog())
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    if args.json:
        print(json.dumps({"key": key, **_public(record)}, indent=2))
    else:
        print(f"created key {record.prefix} for app {record.app}; it is shown only now:\n\n    {key}\n")
    return 0


def _public(record: AppKey, *, human: bool = False) -> dict[str, object]:
    """A key's record without its hash; times as ISO 8601 for people, epoch ms for machines."""
    fields = {name: getattr(record, name) for name in KEY_COLUMNS}
    fields["models"] = ",".join(record.models)
    if human:
        for name in ("created_ms", "revoked_ms"):
            fields[name] = (
                "" if fields[name] is None else clock.utc_datetime(int(str(fields[name]))).isoformat()
            )
    return fields


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    from cli import report
    from symphony.app_keys import list_keys

    rows = [list(_public(record, human=not args.json).values()) for record in list_keys(_redis(settings))]
    print(report.render(KEY_COLUMNS, rows, as_json=args.json))
    return 0


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from symphony.app_keys import revoke_key

    try:
        record = revoke_key(_redis(settings), args.prefix, clock.wall_ms())
    except KeyError as exc:
        raise UsageProblem(str(exc.args[0])) from None
    print(json.dumps(_public(record)) if args.json else f"revoked key {record.prefix} of app {record.app}")
    return 0


def cmd_flags(settings: Settings, args: argparse.Namespace) -> int:
    """Show the live flags, or change them on every replica and the engine (within a second or two)."""
    from dataclasses import asdict

    from symphony.flags import FlagError, Flags
    from symphony.keys import FLAGS_KEY

    client = _redis(settings)
    wanted = (
        ("learner_enabled", _on_off(args.learner)),
        ("traffic_split", args.traffic_split),
        ("scheduler_enabled", _on_off(args.scheduler)),
        ("challenger_frozen", _on_off(args.freeze)),
        ("evidence_bundles", _on_off(args.evidence)),
    )
    changes = {name: value for name, value in wanted if value is not None}
    defaults = Flags(
        settings.learner_enabled,
        settings.traffic_split,
        settings.scheduler_enabled,
        evidence_bundles=settings.evidence_bundles,
    )
    try:
        for name, value in changes.items():
            defaults.with_value(name, value)  # refuse a bad value before anything is written
    except FlagError as exc:
        raise UsageProblem(str(exc)) from None
    if args.reset:
        client.delete(FLAGS_KEY)
    for name, value in changes.items():
        client.hset(FLAGS_KEY, name, value)
    stored: dict[bytes, bytes] = client.hgetall(FLAGS_KEY)  # type: ignore[assignment]
    live = defaults.merged(stored)
    overridden = sorted(name.decode() for name in stored)
    if args.json:
        shown = {**asdict(live), "challenger_share": live.challenger_share, "overridden": overridden}
        print(json.dumps(shown))
        return 0
    source = f"live: {', '.join(overridden)}" if overridden else "from the environment"
    print(
        f"learner_enabled={str(live.learner_enabled).lower()} traffic_split={live.traffic_split:g} "
        f"scheduler_enabled={str(live.scheduler_enabled).lower()} "
        f"challenger_frozen={str(live.challenger_frozen).lower()} "
        f"evidence_bundles={str(live.evidence_bundles).lower()} "
        f"(challenger share {live.challenger_share:g}; {source})"
    )
    return 0


def _on_off(value: str | None) -> str | None:
    return None if value is None else str(value == "on").lower()


KEY_COLUMNS = (
    "prefix",
    "app",
    "created_ms",
    "revoked_ms",
    "budget_usd_day",
    "budget_usd_month",
    "rpm",
    "tpm",
    "models",
)


class UsageProblem(Exception):
    """The command was asked for something it cannot do; the message says what to do instead."""


class StackUnavailable(Exception):
    """A report needs a part of the stack that is not running."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; given ``command``, the other commands that live in modules of their own are
    listed but not built, so their modules (numpy, SciPy, pyarrow, Bytewax, lxml behind some) stay
    unimported: every part of the stack is a `python -m cli <part>` process, the proxy's included."""
    parser = argparse.ArgumentParser(
        prog="symphony",
        description="Symphony: an LLM routing proxy. Settings come from the environment (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run the whole stack (Redis if needed, simulator, engine, proxy) until Ctrl-C,"
        " restarting a part that dies",
    )
    up.add_argument(
        "--speed",
        type=_positive_float,
        default=1.0,
        help="simulated clock speed shared by every process (default 1 = real time)",
    )
    up.add_argument(
        "-w", "--workers", type=_positive_int, default=1, help="engine dataflow workers (default 1)"
    )
    up.add_argument(
        "--proxy-workers",
        type=_positive_int,
        default=None,
        help="proxy processes sharing the proxy's port (default PROXY_WORKERS, else 1)",
    )
    up.add_argument("--duration", type=_positive_float, default=None, help="stop by itself after SECONDS")
    up.set_defaults(run=cmd_up)

    demo = sub.add_parser(
        "demo", help="start the stack, send traffic with the openai package, print a report"
    )
    demo.add_argument("--requests", type=_positive_int, default=300, help="requests to send (default 300)")
    demo.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        help="exit after SECONDS in all (default: keep the stack running until Ctrl-C)",
    )
    demo.add_argument("--speed", type=_positive_float, default=1.0, help="simulated clock speed (default 1)")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.set_defaults(run=cmd_demo)

    sub.add_parser("sim", help="run the provider simulator").set_defaults(run=cmd_sim)
    sub.add_parser("proxy", help="run the proxy (data plane)").set_defaults(run=cmd_proxy)
    sub.add_parser(
        "scheduler",
        help="run the scheduler: plan queued jobs into usage windows and send them through the proxy",
    ).set_defaults(run=cmd_scheduler)
    engine = sub.add_parser("engine", help="run the control plane: dataflows into ClickHouse, query API")
    engine.add_argument("-w", "--workers", type=_positive_int, default=1, help="dataflow workers (default 1)")
    engine.add_argument(
        "-i",
        "--process-id",
        type=int,
        default=0,
        help="this process's index in a Bytewax cluster (default 0)",
    )
    engine.add_argument(
        "-a",
        "--addresses",
        default="",
        help='every cluster process\'s host:port, ";"-separated (default: none)',
    )
    engine.set_defaults(run=cmd_engine)

    keys = sub.add_parser("keys", help="app keys: create, list, revoke").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    create = keys.add_parser("create", help="issue a key for an app (printed once)")
    create.add_argument("--app", required=True, help="the app's name (letters, digits, . _ -)")
    create.add_argument("--budget-usd-day", type=_positive_float, help="spend cap per UTC day, in USD")
    create.add_argument(
        "--budget-usd-month", type=_positive_float, help="spend cap per calendar month, in USD"
    )
    create.add_argument("--rpm", type=_positive_int, help="requests per rolling minute")
    create.add_argument("--tpm", type=_positive_int, help="tokens per rolling minute")
    create.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="allowed catalog models, as a name or provider/model (default: any)",
    )
    create.add_argument("--json", action="store_true", help="print the key and its record as JSON")
    create.set_defaults(run=cmd_keys_create)
    listing = keys.add_parser("list", help="every key's record (never the secret)")
    listing.add_argument("--json", action="store_true", help="print rows as JSON")
    listing.set_defaults(run=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="stop a key working on every replica within a second")
    revoke.add_argument("prefix", help="the key's 8-character prefix (see `symphony keys list`)")
    revoke.add_argument("--json", action="store_true", help="print the revoked record as JSON")
    revoke.set_defaults(run=cmd_keys_revoke)

    from cli import load, models

    models_parser = sub.add_parser(
        "models",
        help="every catalog model (CATALOG_FILE): served or not, and why (no key, a missing capability)",
        description=(models.__doc__ or "").split("\n\n", 1)[0],
    )
    models.add_arguments(models_parser)
    models_parser.set_defaults(run=cmd_models)

    load_parser = sub.add_parser(
        "load", help="workload generator: traffic through the proxy, feedback from truth"
    )
    load.add_arguments(load_parser)
    load_parser.set_defaults(run=load.command)

    matrix = sub.add_parser(
        "quotas-matrix",
        help="every cap by window (providers, models, apps): used, remaining, time to reset and to run out",
    )
    matrix.add_argument(
        "--json", action="store_true", help="print rows as JSON (times in ms, app budgets in USD)"
    )
    matrix.set_defaults(run=cmd_quotas_matrix)

    coverage = sub.add_parser(
        "trace-coverage",
        help="the share of decisions in the window with a trace, in ClickHouse (and Tempo when set)",
    )
    coverage.add_argument(
        "--window", type=_duration_ms, default=3_600_000, help="how far back, e.g. 15m, 1h, 1d (default 1h)"
    )
    coverage.add_argument("--json", action="store_true", help="print rows as JSON")
    coverage.set_defaults(run=cmd_trace_coverage)

    plan = _module_command(
        sub,
        command,
        "scheduler-plan",
        "scheduler_plan",
        "the queued jobs' plan per provider and window: budget, forecast, jobs, utilisation, overflow",
    )
    if plan is not None:
        plan.set_defaults(run=cmd_scheduler_plan)

    learner = sub.add_parser(
        "learner-metrics",
        help="off-policy evaluation of the challenger (IPS, SNIPS, DR) per 24h window and task; promotion",
    )
    learner.add_argument("--days", type=_positive_int, default=7, help="how many days back (default 7)")
    learner.add_argument(
        "--resamples",
        type=_positive_int,
        default=1000,
        help="bootstrap resamples per interval (default 1000)",
    )
    learner.add_argument("--json", action="store_true", help="print the report as JSON")
    learner.set_defaults(run=cmd_learner_metrics)

    _module_command(
        sub,
        command,
        "learner-promote",
        "learner_promote",
        "propose the learner's challenger as the next champion: a branch, a commit and a pull request",
    )

    _module_command(
        sub,
        command,
        "perf-run",
        "perf_run",
        "the performance gate: k6 against /v1/route/execute on a stack of its own, PASS or FAIL",
    )

    _module_command(
        sub,
        command,
        "chaos-run",
        "chaos_run",
        "the chaos gate: fault scenarios against a stack of its own, PASS or FAIL each",
    )

    _module_command(
        sub,
        command,
        "learner-week",
        "learner_week",
        "a simulated week end to end on a stack of its own: traffic, learner, report, promotion",
    )

    _module_command(
        sub,
        command,
        "mvp3-validate",
        "mvp3_validate",
        "the six go-live acceptances from a fresh two-week replay and the gates, PASS or FAIL each",
    )

    _module_command(
        sub,
        command,
        "release",
        "release",
        "the release pack checked (version, CHANGELOG, summary, mvp3-validate), then tagged and drafted",
    )

    _module_command(
        sub,
        command,
        "rollback-drill",
        "rollback_drill",
        "each live rollback on a running stack under load, timed on every proxy replica, PASS or FAIL",
    )

    _module_command(
        sub,
        command,
        "scheduler-report",
        "scheduler_report",
        "utilisation per provider window, overflow, deadline misses and the optimum, two periods and deltas",
    )
    _module_command(
        sub,
        command,
        "scheduler-weeks",
        "scheduler_weeks",
        "two simulated weeks (scheduler off, then on) into a ClickHouse of their own, and their report",
    )

    flags = sub.add_parser(
        "flags",
        help="live rollback: show or set learner_enabled, traffic_split and scheduler_enabled",
        description=(
            "Without options, print the live flags. --learner off serves the champion alone and stops the "
            "learner publishing; --traffic-split 0 serves the champion alone; --scheduler off sends queued "
            "jobs at once (the baseline). Every proxy replica, the engine and the scheduler read the flags "
            "every second; --reset returns to the environment's values."
        ),
    )
    flags.add_argument("--learner", choices=("on", "off"), help="turn the learner on or off")
    flags.add_argument("--traffic-split", metavar="SHARE", help="the challenger's share of requests, 0 to 1")
    flags.add_argument(
        "--scheduler", choices=("on", "off"), help="plan jobs into windows (on) or send them at once (off)"
    )
    flags.add_argument(
        "--freeze",
        choices=("on", "off"),
        help="on: the learner keeps learning but publishes nothing; the published challenger keeps serving",
    )
    flags.add_argument(
        "--evidence", choices=("on", "off"), help="evidence bundles and tickets for alerts that fire"
    )
    flags.add_argument("--reset", action="store_true", help="drop the live values: the environment's hold")
    flags.add_argument("--json", action="store_true", help="print the flags as JSON")
    flags.set_defaults(run=cmd_flags)

    # Its actions (capture, verify) each set their own `run`.
    _module_command(sub, command, "evidence", "evidence", "evidence bundles: capture one, verify one")

    sql = sub.add_parser("sql", help="run read-only SQL against ClickHouse through the engine")
    sql.add_argument("query", help='the SQL, e.g. "SELECT count() FROM usage FINAL"')
    sql.add_argument("--json", action="store_true", help="print rows as JSON")
    sql.set_defaults(run=cmd_sql)
    return parser


class _CommandModule(Protocol):
    """A command in a module of its own: its docstring's second paragraph on is its --help; its
    ``command``, when it has one, runs it."""

    __doc__: str | None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...


def _module_command(
    sub: Any, command: str | None, name: str, module_name: str, help_text: str
) -> argparse.ArgumentParser | None:
    """The command ``name`` from ``cli.<module_name>``, built (and the module imported) only when the
    command line names it or none; otherwise only listed with its help, and None."""
    if command not in (None, name):
        sub.add_parser(name, help=help_text)
        return None
    module = cast(_CommandModule, importlib.import_module(f"cli.{module_name}"))
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=(module.__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    run = getattr(module, "command", None)
    if run is not None:
        parser.set_defaults(run=run)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command the arguments name (the first that is not an option), if any."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _duration_ms(text: str) -> int:
    from symphony.quotas.rules import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, got {text!r}")
    return int(text)


def _token_help(settings: Settings, role: str | None) -> str:
    """Where the control-plane token(s) came from, and how to point the command at the right ones."""
    roles: tuple[Literal["admin", "analyst"], ...] = (
        ("admin",) if role == "admin" else ("analyst",) if role == "analyst" else ("analyst", "admin")
    )
    origins = "; ".join(settings.token_origin(r) for r in roles)
    return (
        f"{origins}. Run the command in the directory `symphony up` runs in, or set VAR_DIR to its var "
        "directory, or set the token itself (ANALYST_TOKEN, ADMIN_TOKEN)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(_command_in(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"symphony: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from cli.supervisor import StackError
    from learner.pull_request import PromotionError
    from symphony.catalog import CatalogError
    from symphony.engine_client import EngineError, EngineUnauthorized

    try:
        code: int = args.run(settings, args)
    except SettingsError as exc:  # a part found a setting it cannot run with
        print(f"symphony: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EngineUnauthorized as exc:
        print(f"symphony: {exc}\n{_token_help(settings, exc.role)}", file=sys.stderr)
        return 1
    except (EngineError, StackUnavailable, UsageProblem, PromotionError, CatalogError) as exc:
        print(f"symphony: {exc}", file=sys.stderr)
        return 1
    except StackError as exc:
        print(f"symphony: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `symphony … | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code
