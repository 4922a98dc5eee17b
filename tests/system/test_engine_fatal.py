"""chDB's fatal state: the engine exits at once, one line, EXIT_CLICKHOUSE_FATAL; a restart loses nothing.

The fatal state is provoked for real, the way it happened: a fault in another
library of the engine process (Bytewax's SQLite, writing its recovery store's
``-shm`` mapping after the file was truncated under it) is caught by chDB's
process-wide signal handler, which marks chDB crashed. The truncation here
comes from the test process; in the incident it came from the engine's own
trimmer thread (see ``dataflows.trimmer_process``).
"""

from __future__ import annotations

import os
import threading
import time

import pyarrow as pa
import pytest
import redis
from clickhouse_connect.driver.exceptions import DatabaseError

from dataflows.engine import EXIT_CLICKHOUSE_FATAL
from sinks.chdb_fatal import ClickHouseFatal, FatalWatch, fatal_message
from sinks.clickhouse import Backoff, SinkStopped, write_durably
from symphony import engine_client
from symphony.stream import publish
from tests.engineutil import SHARDS, Engine, events, exact

# What chDB raises, word for word, once it is in its fatal state (clickhouse-connect wraps chdb's ChdbError).
CHDB_FATAL = "Code: 236. DB::Exception: The server is shutting down due to a fatal error. (ABORTED)"
FATAL_LINE = "ClickHouse (chDB) hit a fatal error"


# By hand, not in CI: when the SIGBUS lands while the faulting thread holds Python's GIL, chDB's handler
# sleeps holding it, the whole engine freezes (the probe cannot run) and the test times out. Seen once in
# four loaded runs; the root cause of the real incident (the trimmer's SQLite) is gone, and the detection
# itself is tested below on chDB's exact error.
@pytest.mark.by_hand
def test_a_fault_caught_by_chdb_ends_the_engine_at_once_and_a_restart_loses_nothing(
    engine: Engine, redis_client: redis.Redis
) -> None:
    requests = 2000
    engine.start()
    publish(redis_client, events(0, requests // 2), SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", requests // 2, timeout=30)

    shm = engine.var_dir / "recovery" / "part-0.sqlite3-shm"
    assert shm.exists(), "Bytewax's recovery store is not in WAL mode any more; this test needs another fault"
    faulted = time.monotonic()
    os.truncate(shm, 0)  # Bytewax's next commit touches its mapping past the end: SIGBUS, caught by chDB
    publish(redis_client, events(requests // 2, requests), SHARDS)
    assert engine.process is not None
    code = engine.process.wait(timeout=60)
    took = time.monotonic() - faulted
    engine.process = None

    log = engine.log.read_text()
    lines = [line for line in log.splitlines() if FATAL_LINE in line]
    assert code == EXIT_CLICKHOUSE_FATAL, log[-3000:]
    assert len(lines) == 1, lines
    assert "Code: 236" in lines[0] and "chdb.log" in lines[0] and "supervisor restarts" in lines[0]
    # At once: a probe a second plus Bytewax's next commit (an epoch is a second), not chDB's
    # five minutes in its signal handler.
    assert took < 10, f"the engine took {took:.1f}s to exit"

    engine.start()  # the same chDB, recovery store and stream
    for table in ("usage", "decisions"):
        engine_client.wait_for_count(engine.url, f"SELECT count() FROM {table} FINAL", requests, timeout=30)
        final, unique, _ = exact(engine, table)
        assert (final, unique) == (requests, requests), table


class _Refusing:
    """A writer whose every insert fails as chDB's do once it is in its fatal state."""

    def __init__(self) -> None:
        self.calls = 0

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self.calls += 1
        try:
            raise RuntimeError(CHDB_FATAL)  # what chdb's connection raises first
        except RuntimeError as inner:
            raise DatabaseError(CHDB_FATAL) from inner


def _batch() -> list[dict[str, pa.Table]]:
    return [{"feedback": pa.table({"event_id": ["e1"]})}]


def test_the_sink_stops_at_the_first_fatal_error_instead_of_retrying() -> None:
    writer = _Refusing()
    with pytest.raises(ClickHouseFatal) as raised:
        write_durably(writer, _batch(), stop=threading.Event(), stop_on_fatal=True)
    assert writer.calls == 1
    assert str(raised.value) == CHDB_FATAL


def test_without_stop_on_fatal_the_sink_keeps_retrying_a_server() -> None:
    """A ClickHouse server saying so is restarting; the sink waits for it as for any outage."""
    writer = _Refusing()
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    with pytest.raises(SinkStopped):
        write_durably(writer, _batch(), stop=stop, backoff=Backoff(first=0.01, cap=0.01))
    timer.join()
    assert writer.calls > 1


def test_fatal_message_is_chdbs_error_only() -> None:
    assert fatal_message(DatabaseError(CHDB_FATAL)) == CHDB_FATAL
    assert (
        fatal_message(DatabaseError("Code: 236. DB::Exception: Cancelled merging parts. (ABORTED)")) is None
    )
    assert fatal_message(DatabaseError("Code: 159. DB::Exception: Timeout exceeded")) is None
    wrapped = RuntimeError("the dataflow failed")
    wrapped.__cause__ = DatabaseError(CHDB_FATAL)
    assert fatal_message(wrapped) == CHDB_FATAL


def test_the_probe_reports_the_fatal_state_once() -> None:
    class Probe:
        def command(self, sql: str) -> None:
            raise DatabaseError(CHDB_FATAL)

        def close(self) -> None:
            pass

    seen: list[str] = []
    done = threading.Event()

    def on_fatal(message: str) -> None:
        seen.append(message)
        done.set()

    watch = FatalWatch("chdb:///unused", on_fatal, interval=0.01, open_handle=lambda dsn: Probe())
    watch.start()
    assert done.wait(5)
    watch.stop()
    assert seen == [CHDB_FATAL]
