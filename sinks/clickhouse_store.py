"""ClickHouse for Symphony, chDB or a server, chosen by the DSN: one writer, and a sandbox for analysts.

``chdb:///abs/dir`` opens the embedded engine in this process (one process per
directory), configured by ``sinks.chdb_config``, with every table in the
``symphony`` database; ``http(s)://user:password@host:port/database`` talks to a
server. Both go through the same clickhouse-connect client API.

The writer (the sinks, migrations, the engine's own reads) has a handle and a lock
of its own. Analysts' queries run on other handles (``sinks.analyst_sandbox``),
read-only and limited by ClickHouse, in parallel with the writer and with each
other: chDB runs queries from different connections concurrently, so ingest never
waits for an analyst. ``check_read_only`` is only the friendly first word on a
statement; ClickHouse is the defence.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.exceptions import OperationalError

from sinks.analyst_sandbox import (
    AnalystLimits,
    AnalystSandbox,
    QueryError,
    SandboxBusy,
    StoreUnavailable,
    new_query_id,
    tag_of,
)
from sinks.chdb_config import DATABASE, write_config
from symphony import clock

__all__ = [
    "ClickHouseStore",
    "QueryError",
    "Rows",
    "SandboxBusy",
    "SideWriter",
    "StoreUnavailable",
    "check_read_only",
]

READ_ONLY_STATEMENTS = ("SELECT", "WITH")
# A quoted string or identifier (kept), or a comment (dropped).
_QUOTED_OR_COMMENT = re.compile(
    r"""(?P<quoted>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`)|--[^\n]*|#[^\n]*|/\*.*?\*/""",
    re.DOTALL,
)
_FIRST_WORD = re.compile(r"^[\s(]*([A-Za-z]+)")
_INTO_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)


@dataclass(frozen=True)
class Rows:
    columns: list[str]
    rows: list[list[Any]]


def check_read_only(sql: str) -> str:
    """The one read statement in ``sql``, comments and trailing ``;`` removed, or ``QueryError``."""
    pieces: list[str] = []
    position = 0
    for match in _QUOTED_OR_COMMENT.finditer(sql):
        pieces.append(sql[position : match.start()])
        pieces.append(match.group() if match.group("quoted") else " ")
        position = match.end()
    pieces.append(sql[position:])
    statement = "".join(pieces).strip().rstrip(";").strip()
    if not statement:
        raise QueryError("empty query")
    first = _FIRST_WORD.match(statement)
    keyword = first.group(1).upper() if first else ""
    if keyword not in READ_ONLY_STATEMENTS:
        raise QueryError(
            f"read-only: only SELECT (or WITH ... SELECT) statements are allowed, got"
            f" {keyword or statement[:20]!r}; for a table's columns, SELECT from system.columns"
        )
    unquoted = _QUOTED_OR_COMMENT.sub(" ", statement)
    if ";" in unquoted:
        raise QueryError("read-only: one statement per query (no ';' between statements)")
    if _INTO_OUTFILE.search(unquoted):
        raise QueryError("read-only: INTO OUTFILE is not allowed")
    return statement


class WriteFaults:
    """Test-only: make this store's writes fail as they do when a ClickHouse server is in trouble.

    ``outage(s)``: for ``s`` seconds every insert is refused before it reaches the
    table, with the error clickhouse-connect raises for a server that does not
    answer. ``lost_acks(n)``: the next ``n`` inserts land, then fail as if the reply
    were lost (a timeout after the server committed), so the writer sends them again.
    ``die_after_insert(table)``: the process dies (exit 137, as a SIGKILL) right after
    the next insert into ``table`` lands, before Bytewax can snapshot its epoch.
    Reads are not affected. Enabled only by ``python -m dataflows.engine --test-faults``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._lost_acks = 0
        self._die_after: str | None = None

    def outage(self, seconds: float) -> None:
        with self._lock:
            self._down_until = clock.monotonic() + seconds

    def lost_acks(self, count: int) -> None:
        with self._lock:
            self._lost_acks = count

    def die_after_insert(self, table: str) -> None:
        with self._lock:
            self._die_after = table

    def before_insert(self) -> None:
        with self._lock:
            left = self._down_until - clock.monotonic()
        if left > 0:
            time.sleep(min(left, 0.05))  # a refused connection still takes a moment
            raise OperationalError(f"injected outage: ClickHouse unreachable for another {left:.1f}s")

    def after_insert(self, table: str) -> None:
        with self._lock:
            if self._die_after == table:
                os._exit(137)  # no cleanup, no snapshot: what a SIGKILL at this instant leaves
            lost = self._lost_acks > 0
            self._lost_acks -= int(lost)
        if lost:
            raise OperationalError("injected lost acknowledgement: the insert landed but the reply timed out")


class ClickHouseStore:
    """The writer's handle behind its own lock, and the analysts' sandbox beside it."""

    def __init__(self, writer: Any, sandbox: AnalystSandbox, dsn: str) -> None:
        self._writer = writer
        self._lock = threading.Lock()
        self._sandbox = sandbox
        self.dsn = dsn
        self.faults: WriteFaults | None = None

    @classmethod
    def connect(
        cls, dsn: str, *, limits: AnalystLimits | None = None, log_dir: Path | None = None
    ) -> ClickHouseStore:
        """Open ``dsn``; for chDB, ``log_dir`` receives the engine's own log (default: beside the data)."""
        limits = limits or AnalystLimits()
        if dsn.startswith("chdb:///"):
            return cls._connect_embedded(dsn, limits, log_dir)
        if dsn.startswith(("http://", "https://")):
            writer = clickhouse_connect.get_client(dsn=dsn)
            # A server applies a client's settings to every request it sends.
            sandbox = AnalystSandbox(
                lambda settings: clickhouse_connect.get_client(dsn=dsn, settings=dict(settings)), limits
            )
            return cls(writer, sandbox, dsn)
        raise ValueError(f"unsupported ClickHouse DSN {dsn!r}: expected chdb:///abs/dir or http(s)://")

    @classmethod
    def _connect_embedded(cls, dsn: str, limits: AnalystLimits, log_dir: Path | None) -> ClickHouseStore:
        data_dir = Path(dsn.removeprefix("chdb://"))
        config = write_config(data_dir, log_dir or data_dir.with_name("logs"))
        options = {"config-file": str(config)}
        # The first handle starts the engine with the configuration; later ones share it.
        writer = clickhouse_connect.get_client(dsn=dsn, chdb_options=options)
        try:
            writer.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
            writer.database = DATABASE
        except Exception:
            writer.close()
            raise

        def open_reader(settings: Mapping[str, Any]) -> Any:
            return clickhouse_connect.get_client(dsn=dsn, database=DATABASE, settings=dict(settings))

        return cls(writer, AnalystSandbox(open_reader, limits), dsn)

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        with self._lock:
            return self._writer.command(sql, parameters=parameters)

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Rows:
        with self._lock:
            result = self._writer.query(sql, parameters=parameters)
        return Rows(columns=list(result.column_names), rows=[list(row) for row in result.result_rows])

    def query_read_only(self, sql: str, query_id: str | None = None) -> Rows:
        """An analyst's query, run in the sandbox; ``QueryError`` says why ClickHouse refused it."""
        statement = check_read_only(sql)
        result = self._sandbox.run(statement, query_id or new_query_id(), embedded=self.embedded)
        return Rows(columns=list(result.column_names), rows=[list(row) for row in result.result_rows])

    def cancel_analyst_query(self, query_id: str) -> None:
        """Stop the analyst query ``query_id`` if it still runs (its client went away)."""
        self.command(
            "KILL QUERY WHERE startsWith(query, {tag:String}) ASYNC", parameters={"tag": tag_of(query_id)}
        )

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        if self.faults is not None:
            self.faults.before_insert()
        with self._lock:
            self._writer.insert_arrow(table, data)
        if self.faults is not None:
            self.faults.after_insert(table)

    def open_writer(self) -> SideWriter:
        """Another write handle on the same ClickHouse, with a lock of its own: what it writes
        never waits for this store's writer (the event sink), nor the sink for it."""
        if self.embedded:
            handle = clickhouse_connect.get_client(dsn=self.dsn, database=DATABASE)
        else:
            handle = clickhouse_connect.get_client(dsn=self.dsn)
        return SideWriter(handle)

    def close(self) -> None:
        self._sandbox.close()
        with self._lock:
            self._writer.close()


class SideWriter:
    """A write handle of its own (``ClickHouseStore.open_writer``): ``insert_arrow`` and ``close``."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._lock = threading.Lock()

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        with self._lock:
            self._handle.insert_arrow(table, data)

    def close(self) -> None:
        with self._lock:
            self._handle.close()
