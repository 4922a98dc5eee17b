"""The control-plane engine: one process that owns ClickHouse (chDB) and runs the dataflows.

``run_engine`` blocks: it applies the schema migrations, starts the HTTP query
API (every other process reads ClickHouse through it), then runs the ingest
dataflow with Bytewax recovery under ``<var_dir>/recovery`` until SIGINT or
SIGTERM. Killed outright, it resumes from its last recovery snapshot on the next
start: nothing is lost, and replayed events collapse by event_id in ClickHouse.

Run it with ``python -m dataflows.engine [-w WORKERS]`` or ``symphony engine``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from dataflows.ingest import build_flow
from dataflows.query_api import QueryApi
from dataflows.redis_source import RedisStreamSource
from sinks.clickhouse import ClickHouseSink
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore
from sinks.redis_state import QuotaStateSink
from symphony.quotas import load_quota_policy
from symphony.settings import Settings, load_settings

log = logging.getLogger(__name__)

EPOCH_INTERVAL = timedelta(seconds=1)
RECOVERY_PARTITIONS = 1


def prepare_recovery(db_dir: Path) -> RecoveryConfig:
    """The recovery store, created on first start (atomically, so a crash cannot leave half of one)."""
    if not db_dir.is_dir():
        staging = db_dir.with_name(f"{db_dir.name}.init-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        init_db_dir(staging, RECOVERY_PARTITIONS)  # type: ignore[no-untyped-call]  # untyped .pyi
        staging.rename(db_dir)
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


def run_engine(settings: Settings, workers: int = 1) -> None:
    """Run the engine until SIGINT or SIGTERM; raise if ClickHouse or the API port is unusable.

    Must run in the main thread (it installs the signal handlers).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    store = ClickHouseStore.connect(settings.clickhouse_dsn)
    api: QueryApi | None = None
    try:
        applied = migrate(store)
        if applied:
            log.info("applied ClickHouse migrations %s", applied)
        api = QueryApi(store, settings.engine_port)
        api.start()
        recovery = prepare_recovery(settings.var_dir / "recovery")
        stop = threading.Event()
        source = RedisStreamSource(settings.redis_url, settings.event_shards, stop=stop)
        quotas = (load_quota_policy(), QuotaStateSink(settings.redis_url))
        flow = build_flow(source, ClickHouseSink(store), quotas)
        with _stop_on_signals(stop):
            cli_main(  # type: ignore[no-untyped-call]
                flow,
                workers_per_process=workers,
                epoch_interval=EPOCH_INTERVAL,
                recovery_config=recovery,
            )
        log.info("engine stopped")
    finally:
        if api is not None:
            api.stop()
        store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dataflows.engine", description="Run the control-plane engine until SIGINT or SIGTERM."
    )
    parser.add_argument("-w", "--workers", type=int, default=1, help="dataflow worker threads (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run_engine(load_settings(), workers=args.workers)


if __name__ == "__main__":
    main()
