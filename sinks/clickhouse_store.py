"""One ClickHouse connection, chDB or a server, chosen by the DSN, safe to share between threads.

``chdb:///abs/dir`` opens the embedded engine in this process (one process per
directory); ``http(s)://user:password@host:port/database`` talks to a server. Both
go through the same clickhouse-connect client API. One lock serializes every call:
a chDB handle must not interleave calls, and an HTTP client shares one session.

Analysts' SQL runs read-only, enforced twice: the text must be one read statement
(no ``;`` between statements, no ``INTO OUTFILE``), and ClickHouse runs it with
``readonly=1`` (for chDB on a handle of its own that is read-only for the session,
because chDB applies a trailing SETTINGS clause to the last statement only).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError, StreamFailureError

from symphony import clock

READ_ONLY_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
READ_ONLY = {"readonly": 1}
# A quoted string or identifier (kept), or a comment (dropped).
_QUOTED_OR_COMMENT = re.compile(
    r"""(?P<quoted>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`)|--[^\n]*|#[^\n]*|/\*.*?\*/""",
    re.DOTALL,
)
_FIRST_WORD = re.compile(r"^[\s(]*([A-Za-z]+)")
_INTO_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)


class QueryError(Exception):
    """A query ClickHouse refused, or one the read-only path does not accept; the message says why."""


class StoreUnavailable(Exception):
    """ClickHouse did not answer (a server that is down or unreachable)."""


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
        allowed = ", ".join(READ_ONLY_STATEMENTS)
        raise QueryError(
            f"read-only: only {allowed} statements are allowed, got {keyword or statement[:20]!r}"
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
    Reads are not affected. Enabled only by ``python -m dataflows.engine --test-faults``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._lost_acks = 0

    def outage(self, seconds: float) -> None:
        with self._lock:
            self._down_until = clock.monotonic() + seconds

    def lost_acks(self, count: int) -> None:
        with self._lock:
            self._lost_acks = count

    def before_insert(self) -> None:
        with self._lock:
            left = self._down_until - clock.monotonic()
        if left > 0:
            time.sleep(min(left, 0.05))  # a refused connection still takes a moment
            raise OperationalError(f"injected outage: ClickHouse unreachable for another {left:.1f}s")

    def after_insert(self) -> None:
        with self._lock:
            lost = self._lost_acks > 0
            self._lost_acks -= int(lost)
        if lost:
            raise OperationalError("injected lost acknowledgement: the insert landed but the reply timed out")


class ClickHouseStore:
    """A writer client and a read-only reader behind one lock."""

    def __init__(self, writer: Any, reader: Any, dsn: str, read_settings: Mapping[str, Any]) -> None:
        self._writer = writer
        self._reader = reader
        self._read_settings = dict(read_settings)
        self._lock = threading.Lock()
        self.dsn = dsn
        self.faults: WriteFaults | None = None

    @classmethod
    def connect(cls, dsn: str) -> ClickHouseStore:
        if dsn.startswith("chdb:///"):
            writer = clickhouse_connect.get_client(dsn=dsn)
            try:
                reader = clickhouse_connect.get_client(dsn=dsn, settings=READ_ONLY)
            except Exception:
                writer.close()
                raise
            return cls(writer, reader, dsn, read_settings={})
        if dsn.startswith(("http://", "https://")):
            # A server applies query settings to the whole request, and refuses multi-statements.
            client = clickhouse_connect.get_client(dsn=dsn)
            return cls(client, client, dsn, read_settings=READ_ONLY)
        raise ValueError(f"unsupported ClickHouse DSN {dsn!r}: expected chdb:///abs/dir or http(s)://")

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

    def query_read_only(self, sql: str) -> Rows:
        """Run an analyst's query read-only; ``QueryError`` carries the reason or ClickHouse's message."""
        statement = check_read_only(sql)
        try:
            with self._lock:
                result = self._reader.query(statement, settings=self._read_settings or None)
        except OperationalError as exc:
            if not isinstance(exc, StreamFailureError) and not self.embedded:
                raise StoreUnavailable(str(exc).strip()) from None
            raise QueryError(str(exc).strip()) from None
        except ClickHouseError as exc:
            raise QueryError(str(exc).strip()) from None
        return Rows(columns=list(result.column_names), rows=[list(row) for row in result.result_rows])

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        if self.faults is not None:
            self.faults.before_insert()
        with self._lock:
            self._writer.insert_arrow(table, data)
        if self.faults is not None:
            self.faults.after_insert()

    def close(self) -> None:
        with self._lock:
            if self._reader is not self._writer:
                self._reader.close()
            self._writer.close()
