"""The control-plane engine: the process that owns ClickHouse (chDB) and runs the dataflows.

``run_engine`` blocks: it applies the schema migrations, starts the HTTP query
API (every other process reads ClickHouse through it, and scrapes ``/metrics``),
then runs the ingest dataflow with Bytewax recovery under ``<var_dir>/recovery``
until SIGINT or SIGTERM. Beside the dataflow: the lag monitor (``dataflows.lag``,
a thread), the stream trimmer (``dataflows.trimming``, in a child process of its
own: ``dataflows.trimmer_process`` says why) and, with embedded chDB, a probe
that ends the engine with ``EXIT_CLICKHOUSE_FATAL`` as soon as chDB is in its
fatal state (``sinks.chdb_fatal``). Killed outright, the engine resumes from its
last recovery snapshot on the next start: nothing is lost, and replayed events
collapse by event_id in ClickHouse.

Scaling: ``-w N`` runs N worker threads in this process. ``-i I -a "h0:p0;h1:p1"``
makes it process I of a Bytewax cluster (start every process, same settings, same
``VAR_DIR`` for the recovery store). Process 0 is the leader: it migrates, serves
the query API and trims. With an ``http(s)://`` ClickHouse every process writes to
it directly; with embedded chDB (one process per directory) only process 0 opens
it, and the others write through its ``POST /insert`` (``sinks.engine_writer``).
Stop a cluster by signalling every process.

Run it with ``python -m dataflows.engine [-w WORKERS] [-i ID -a ADDRESSES]`` or
``symphony engine``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from dataflows import trimming
from dataflows.api_auth import Tokens
from dataflows.console_feed import ConsoleFeed
from dataflows.ingest import FLOW_ID, build_flow
from dataflows.lag import LagMonitor
from dataflows.learner_diff import PolicyDiff
from dataflows.learner_report import LearnerReport
from dataflows.metrics import engine_metrics
from dataflows.query_api import QueryApi, create_app
from dataflows.redis_source import RedisStreamSource
from dataflows.slo import slo_thresholds
from dataflows.trimmer_process import TrimmerConfig, TrimmerProcess
from scheduler.forecast_publisher import ForecastPublisher
from scheduler.windows import windowed
from sinks.alerts import AlertSink, Delivery, alert_destinations
from sinks.analyst_sandbox import AnalystLimits
from sinks.chdb_fatal import ClickHouseFatal, FatalWatch
from sinks.clickhouse import ClickHouseSink, SinkStats, SinkStopped, Writer
from sinks.clickhouse_ddl import Target
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore, WriteFaults
from sinks.engine_writer import EngineWriter
from sinks.evidence.on_alert import EvidenceOnAlert
from sinks.evidence.service import EvidenceService, build_service
from sinks.redis_state import ChallengerSink, QuotaStateSink
from sinks.span_writer import SpanWriter
from symphony import engine_client
from symphony.catalog import load_policy, resolve_policy_path
from symphony.flags import Flags
from symphony.gc_tuning import tune_gc
from symphony.keys import FLAGS_KEY
from symphony.process_logging import log_to_stderr
from symphony.quotas import load_quota_policy
from symphony.redis_client import sync_redis
from symphony.settings import ENGINE_PORT_FILE, Settings, SettingsError, load_provider_keys, load_settings

log = logging.getLogger(__name__)

EPOCH_INTERVAL = timedelta(seconds=1)
RECOVERY_PARTITIONS = 1
CONSUMER = FLOW_ID  # the ingest dataflow's name among the stream's consumers
SOURCE_STEP = f"{FLOW_ID}.read"
EXIT_STOPPED_IN_OUTAGE = 3  # stopped with an epoch unwritten: its events are read again on restart
# The embedded ClickHouse (chDB) is in its fatal state, which only a new process clears: exited at once,
# with the epoch unwritten (read again on restart), for the supervisor to start the engine again.
EXIT_CLICKHOUSE_FATAL = 4

_fatal_exit = threading.Lock()


@dataclass(frozen=True)
class Cluster:
    """Where this process stands in a Bytewax cluster; the default is a cluster of one."""

    process_id: int = 0
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.addresses and not 0 <= self.process_id < len(self.addresses):
            raise ValueError(
                f"process id {self.process_id} is not one of the {len(self.addresses)} addresses"
            )
        if not self.addresses and self.process_id != 0:
            raise ValueError("a process id other than 0 needs the cluster's addresses (-a)")

    @property
    def processes(self) -> int:
        return max(1, len(self.addresses))

    @property
    def leader(self) -> bool:
        return self.process_id == 0


def prepare_recovery(db_dir: Path) -> RecoveryConfig:
    """The recovery store, created on first start (atomically, so a crash cannot leave half of one)."""
    if not db_dir.is_dir():
        staging = db_dir.with_name(f"{db_dir.name}.init-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        init_db_dir(staging, RECOVERY_PARTITIONS)  # type: ignore[no-untyped-call]  # untyped .pyi
        try:
            staging.rename(db_dir)
        except OSError:
            if not db_dir.is_dir():  # not another process of the cluster creating it at the same time
                raise
            shutil.rmtree(staging, ignore_errors=True)
    return RecoveryConfig(db_dir)  # type: ignore[no-untyped-call]


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """The first SIGINT or SIGTERM asks the dataflow to finish; a second one interrupts it at once."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt(signal.Signals(signum).name)
        log.info("%s: finishing the current epoch, then stopping", signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _register(redis_url: str) -> None:
    """Join the stream's consumers before reading, so no one trims what this engine still needs."""
    client = sync_redis(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        trimming.register(client, CONSUMER)
    except (redis.RedisError, OSError) as exc:
        log.warning("could not register as a stream consumer yet (the trimmer will retry): %s", exc)
    finally:
        client.close()


def api_tokens(settings: Settings) -> Tokens | None:
    """The control-plane API's tokens; none (an open API) only when auth is disabled."""
    if settings.auth_disabled:
        log.warning("AUTH_DISABLED=true: the control-plane API is open to anyone who can reach it")
        return None
    if settings.admin_token is None:
        raise SettingsError(
            "invalid setting ADMIN_TOKEN: not set; the control-plane API needs an admin token "
            "(`symphony up` makes one), or AUTH_DISABLED=true for local development"
        )
    analyst = settings.analyst_token.get_secret_value() if settings.analyst_token is not None else None
    spans = settings.spans_token.get_secret_value() if settings.spans_token is not None else None
    return Tokens(settings.admin_token.get_secret_value(), analyst, spans)


def analyst_limits(settings: Settings) -> AnalystLimits:
    return AnalystLimits(
        max_seconds=settings.analyst_max_seconds,
        max_memory_mb=settings.analyst_max_memory_mb,
        max_rows_read=settings.analyst_max_rows_read,
        max_result_rows=settings.analyst_max_result_rows,
        max_result_mb=settings.analyst_max_result_mb,
        concurrency=settings.analyst_concurrency,
    )


def run_engine(
    settings: Settings,
    workers: int = 1,
    cluster: Cluster | None = None,
    *,
    trim_interval: float = trimming.TRIM_EVERY_S,
    test_faults: bool = False,
    any_port: bool = False,
) -> None:
    """Run the engine until SIGINT or SIGTERM; raise if ClickHouse or the API port is unusable.

    Must run in the main thread (it installs the signal handlers). ``test_faults``
    adds the test-only ``POST /faults`` route (``WriteFaults``) to the query API.
    ``any_port`` (tests): the query API listens on a port the OS picks, not ENGINE_PORT,
    and the engine writes it to ``<var_dir>/ENGINE_PORT_FILE`` once it listens.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    cluster = cluster or Cluster()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    log_dir = settings.var_dir / "logs"
    stop = threading.Event()
    stats = SinkStats()
    with ExitStack() as stack:
        writer: Writer
        embedded = settings.resolved_clickhouse_url.startswith("chdb://")
        if cluster.leader or not embedded:
            store = ClickHouseStore.connect(
                settings.resolved_clickhouse_url, limits=analyst_limits(settings), log_dir=log_dir
            )
            stack.callback(store.close)
            writer = store
            if embedded:
                url = settings.resolved_clickhouse_url
                watch = FatalWatch(url, lambda message: exit_on_clickhouse_fatal(message, log_dir))
                watch.start()
                stack.callback(watch.stop)
        else:
            remote = EngineWriter(settings.engine_url_as("admin"))
            stack.callback(remote.close)
            writer = remote
        own_store = store if cluster.leader or not embedded else None
        evidence = evidence_service(settings, own_store, writer)
        if cluster.leader:
            applied = migrate(store, target=Target(settings.clickhouse_cluster))
            if applied:
                log.info("applied ClickHouse migrations %s", applied)
            if test_faults:
                store.faults = WriteFaults()
            metrics_client = sync_redis(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            stack.callback(metrics_client.close)
            champion = load_policy(settings.policy_file, settings.read_catalog())
            # The proxy's spans (POST /v1/traces) on a write handle of their own, off the sink's path.
            span_handle = store.open_writer()
            stack.callback(span_handle.close)
            spans = SpanWriter(span_handle)
            spans.start()
            stack.callback(spans.stop)
            app = create_app(
                store,
                tokens=api_tokens(settings),
                metrics=lambda: engine_metrics(metrics_client, settings.event_shards, stats, spans.stats),
                accept_writes=embedded and cluster.processes > 1,
                faults=store.faults,
                learner=LearnerReport(store, metrics_client, champion),
                spans=spans,
                evidence=evidence.answer,
                console=ConsoleFeed(
                    store, metrics_client, load_quota_policy(), slo_thresholds(settings)
                ).snapshot,
                var_dir=settings.var_dir,
                policy_diff=PolicyDiff(champion, metrics_client),
            )
            api = QueryApi(app, 0 if any_port else settings.engine_port)
            api.start()
            stack.callback(api.stop)
            # The interactive forecast for the scheduler; its reads run in the analysts' sandbox, never
            # under the writer's lock.
            forecasts = ForecastPublisher(
                settings.redis_url,
                lambda sql: store.query_read_only(sql).rows,
                sorted(windowed(load_quota_policy(resolve_policy_path(settings.quota_policy_file)))),
            )
            forecasts.start()
            stack.callback(forecasts.stop)
            if any_port:
                write_port_file(settings.var_dir, api.port)
        recovery_dir = settings.var_dir / "recovery"
        recovery = prepare_recovery(recovery_dir)
        _register(settings.redis_url)
        lag = LagMonitor(settings.redis_url, CONSUMER)
        lag.start()
        stack.callback(lag.stop)
        if cluster.leader:
            # In a process of its own: its SQLite must not share this process with Bytewax's.
            trimmer = TrimmerProcess(
                TrimmerConfig(
                    settings.redis_url,
                    str(recovery_dir),
                    CONSUMER,
                    SOURCE_STEP,
                    settings.event_shards,
                    trim_interval,
                    settings.log_format,
                )
            )
            trimmer.start()
            stack.callback(trimmer.stop)
        source = RedisStreamSource(settings.redis_url, settings.event_shards, stop=stop, lag=lag)
        quotas = (load_quota_policy(), QuotaStateSink(settings.redis_url))
        # Always built, so the live flag can turn it on; off, it publishes nothing (ChallengerSink).
        defaults = Flags(settings.learner_enabled, settings.traffic_split)
        learner = (
            load_policy(settings.policy_file, settings.read_catalog()),
            ChallengerSink(settings.redis_url, defaults),
        )
        sink = ClickHouseSink(writer, stop=stop, stats=stats, stop_on_fatal=embedded and cluster.leader)
        destinations = alert_destinations(settings)
        # Always there: the live flag turns it on and off (symphony.flags).
        on_alert = EvidenceOnAlert(evidence, evidence_flag(settings))
        on_alert.start()
        stack.callback(on_alert.stop)
        destinations.append(on_alert)
        delivery = Delivery(destinations)
        delivery.start()
        stack.callback(delivery.stop)
        slo = (slo_thresholds(settings), settings.resolved_trace_url_template, AlertSink(delivery))
        flow = build_flow(source, sink, quotas, learner, slo)
        tune_gc()
        with _stop_on_signals(stop):
            try:
                cli_main(  # type: ignore[no-untyped-call]
                    flow,
                    workers_per_process=workers,
                    process_id=cluster.process_id if cluster.addresses else None,
                    addresses=list(cluster.addresses) or None,
                    epoch_interval=EPOCH_INTERVAL,
                    recovery_config=recovery,
                )
            except Exception as exc:
                fatal = _cause(exc, ClickHouseFatal)
                if fatal is not None:  # before the stack unwinds: closing chDB now could hang
                    exit_on_clickhouse_fatal(str(fatal), log_dir)
                raise
        log.info("engine stopped")


def evidence_service(settings: Settings, store: ClickHouseStore | None, writer: Writer) -> EvidenceService:
    """Evidence on alerts: reads through this process's store, or the leader's query API."""
    if store is not None:
        read_store = store

        def read(sql: str) -> tuple[list[str], list[list[Any]]]:
            rows = read_store.query_read_only(sql)
            return rows.columns, rows.rows
    else:
        url = settings.engine_url_as("admin")

        def read(sql: str) -> tuple[list[str], list[list[Any]]]:
            result = engine_client.query(url, sql)
            return result.columns, result.rows

    held = load_provider_keys(settings.read_catalog(), os.environ)
    keys = [key.get_secret_value() for key in held.values()]
    return build_service(settings, read, writer, keys)


def evidence_flag(settings: Settings) -> Callable[[], bool]:
    """The live ``evidence_bundles`` flag, read from Redis when an alert fires (the default if unreadable)."""
    client = sync_redis(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    defaults = Flags(
        settings.learner_enabled, settings.traffic_split, evidence_bundles=settings.evidence_bundles
    )

    def enabled() -> bool:
        try:
            return defaults.merged(client.hgetall(FLAGS_KEY)).evidence_bundles
        except redis.RedisError:
            return defaults.evidence_bundles

    return enabled


def write_port_file(var_dir: Path, port: int) -> None:
    """``port`` in ``<var_dir>/ENGINE_PORT_FILE``, whole or not at all (a reader polls for it)."""
    partial = var_dir / f"{ENGINE_PORT_FILE}.partial"
    partial.write_text(f"{port}\n")
    partial.replace(var_dir / ENGINE_PORT_FILE)


def exit_on_clickhouse_fatal(message: str, log_dir: Path) -> None:
    """Log one line and end the process now with ``EXIT_CLICKHOUSE_FATAL``.

    ``os._exit``, not an orderly stop: a thread may be parked in chDB's signal handler
    and every chDB call fails, so closing the store or finishing the epoch could only
    hang. Nothing is lost: the epoch is not committed, and its events are read again
    from the stream by the next engine. Called from whichever thread sees the state first.
    """
    if not _fatal_exit.acquire(blocking=False):
        return  # another thread is already ending the process
    log.critical(
        "ClickHouse (chDB) hit a fatal error: %s; see %s; exiting so the supervisor restarts the engine",
        message,
        log_dir / "chdb.log",
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_CLICKHOUSE_FATAL)


def parse_addresses(text: str) -> tuple[str, ...]:
    """``"host:port;host:port"`` (Bytewax's form) as a tuple of addresses."""
    return tuple(address.strip() for address in text.split(";") if address.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dataflows.engine", description="Run the control-plane engine until SIGINT or SIGTERM."
    )
    parser.add_argument("-w", "--workers", type=int, default=1, help="dataflow worker threads (default 1)")
    parser.add_argument("-i", "--process-id", type=int, default=0, help="this process's index in the cluster")
    parser.add_argument(
        "-a",
        "--addresses",
        default="",
        help='every cluster process\'s host:port, ";"-separated (Bytewax form)',
    )
    parser.add_argument(
        "--trim-interval",
        type=float,
        default=trimming.TRIM_EVERY_S,
        help=f"seconds between stream trims (default {trimming.TRIM_EVERY_S:g})",
    )
    parser.add_argument("--test-faults", action="store_true", help=argparse.SUPPRESS)
    # Tests: the query API on a port the OS picks (written to <VAR_DIR>/engine-port), so parallel
    # tests never race each other for a free ENGINE_PORT.
    parser.add_argument("--any-port", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = load_settings()
    log_to_stderr(settings.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per insert through process 0
    cluster = Cluster(args.process_id, parse_addresses(args.addresses))
    try:
        run_engine(
            settings,
            workers=args.workers,
            cluster=cluster,
            trim_interval=args.trim_interval,
            test_faults=args.test_faults,
            any_port=args.any_port,
        )
    except Exception as exc:
        stopped = _cause(exc, SinkStopped)
        if stopped is None:
            raise
        log.error("engine stopped during a ClickHouse outage: %s", stopped)
        sys.exit(EXIT_STOPPED_IN_OUTAGE)


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` or the first exception of ``kind`` in its chain of causes and contexts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


if __name__ == "__main__":
    main()
