"""One ClickHouse connection, chDB or a server, chosen by the DSN, safe to share between threads.

``chdb:///abs/dir`` opens the embedded engine in this process (one process per
directory); ``http(s)://user:password@host:port/database`` talks to a server. Both
go through the same clickhouse-connect client API. One lock serializes every call:
a chDB handle must not interleave calls, and an HTTP client shares one session.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import clickhouse_connect
import pyarrow as pa  # type: ignore[import-untyped]
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError, StreamFailureError

# Statements the read-only query path accepts; ClickHouse's readonly=1 enforces the rest.
READ_ONLY_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
_LEADING_NOISE = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/|\()+", re.DOTALL)
_FIRST_WORD = re.compile(r"^([A-Za-z]+)")


class QueryError(Exception):
    """A query ClickHouse refused, or one the read-only path does not accept; the message says why."""


class StoreUnavailable(Exception):
    """ClickHouse did not answer (a server that is down or unreachable)."""


@dataclass(frozen=True)
class Rows:
    columns: list[str]
    rows: list[list[Any]]


def first_keyword(sql: str) -> str:
    """The statement's first keyword, upper-cased, skipping whitespace, comments and parentheses."""
    match = _FIRST_WORD.match(_LEADING_NOISE.sub("", sql))
    return match.group(1).upper() if match else ""


def check_read_only(sql: str) -> str:
    """The statement without trailing semicolons, or ``QueryError`` if it is not a read."""
    statement = sql.strip().rstrip(";").strip()
    if not statement:
        raise QueryError("empty query")
    keyword = first_keyword(statement)
    if keyword not in READ_ONLY_STATEMENTS:
        allowed = ", ".join(READ_ONLY_STATEMENTS)
        raise QueryError(f"read-only: only {allowed} statements are allowed, got {keyword or sql[:20]!r}")
    return statement


class ClickHouseStore:
    """A clickhouse-connect client behind a lock."""

    def __init__(self, client: Any, dsn: str) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.dsn = dsn

    @classmethod
    def connect(cls, dsn: str) -> ClickHouseStore:
        if not dsn.startswith(("chdb:///", "http://", "https://")):
            raise ValueError(f"unsupported ClickHouse DSN {dsn!r}: expected chdb:///abs/dir or http(s)://")
        return cls(clickhouse_connect.get_client(dsn=dsn), dsn)

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        with self._lock:
            return self._client.command(sql, parameters=parameters)

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Rows:
        with self._lock:
            result = self._client.query(sql, parameters=parameters)
        return Rows(columns=list(result.column_names), rows=[list(row) for row in result.result_rows])

    def query_read_only(self, sql: str) -> Rows:
        """Run an analyst's query with ``readonly=1``; ``QueryError`` carries ClickHouse's message."""
        statement = check_read_only(sql)
        try:
            with self._lock:
                result = self._client.query(statement, settings={"readonly": 1})
        except OperationalError as exc:
            if not isinstance(exc, StreamFailureError) and not self.embedded:
                raise StoreUnavailable(str(exc).strip()) from None
            raise QueryError(str(exc).strip()) from None
        except ClickHouseError as exc:
            raise QueryError(str(exc).strip()) from None
        return Rows(columns=list(result.column_names), rows=[list(row) for row in result.result_rows])

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        with self._lock:
            self._client.insert_arrow(table, data)

    def close(self) -> None:
        with self._lock:
            self._client.close()
