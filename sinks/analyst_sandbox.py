"""Analysts' SQL, run where ClickHouse itself decides what it may do.

The defence is ClickHouse's, in three layers, never a reading of the SQL text:

- **grants** (``sinks.chdb_config``): the engine's one user holds no source
  privilege, so ``file``/``url``/``remote``/``s3``/``mysql``/``postgresql``/... as table
  functions, under SELECT, DESCRIBE or EXPLAIN alike, are ACCESS_DENIED;
- **a read-only session with limits**: every analyst handle runs with
  ``readonly=1`` set last, so no write, no DDL, no ``executable`` and no setting can be
  changed, including the limits below (execution time, memory, rows read, result
  size), which ClickHouse enforces and names;
- **ClickHouse's parser**: the statement is first normalised by ``formatQuerySingleLine``
  (bound as a parameter, never spliced), then run as a subquery,
  ``SELECT * FROM (<statement>)``, where the grammar has no room for a second
  statement, ``INTO OUTFILE``, ``FORMAT`` or ``SETTINGS``. The one reader
  ``clickhouse-local`` leaves unguarded by grants, the scalar ``file()``, is refused
  from ClickHouse's own syntax tree (``EXPLAIN AST``), and so is a ``SETTINGS``
  clause, which a subquery would otherwise ignore in silence.

``sinks.clickhouse_store.check_read_only`` stays in front only for a friendlier message.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError, StreamFailureError

# clickhouse-local reads any path with these, whatever the grants say.
FORBIDDEN_FUNCTIONS = frozenset({"file"})
_AST_FUNCTION = re.compile(r"^\s*Function (\w+)", re.MULTILINE)
_AST_SETTINGS = re.compile(r"^\s*Set$", re.MULTILINE)  # a SETTINGS clause, at any depth
_ERROR_CODE = re.compile(r"Code: (\d+)")
_TAG_PREFIX = "/* analyst:"
BUSY_WAIT_S = 5.0


class QueryError(Exception):
    """A query ClickHouse refused, or one the sandbox does not run; the message says why."""


class StoreUnavailable(Exception):
    """ClickHouse did not answer (a server that is down or unreachable)."""


class SandboxBusy(Exception):
    """Every analyst handle is in use; the message names the setting that sizes them."""


@dataclass(frozen=True)
class AnalystLimits:
    """What one analyst query may use; each field is a setting (``ANALYST_<FIELD>``)."""

    max_seconds: float = 30.0
    max_memory_mb: int = 1024
    max_rows_read: int = 2_000_000_000
    max_result_rows: int = 100_000
    max_result_mb: int = 64
    concurrency: int = 4
    threads: int = max(1, (os.cpu_count() or 2) // 2)

    def session_settings(self) -> dict[str, Any]:
        """The analyst session's settings; ``readonly`` comes last, so nothing after it can change them."""
        return {
            "max_execution_time": self.max_seconds,
            "timeout_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_mb << 20,
            "max_rows_to_read": self.max_rows_read,
            "read_overflow_mode": "throw",
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_mb << 20,
            "result_overflow_mode": "throw",
            "max_threads": self.threads,
            "readonly": 1,
        }

    def explain(self, code: int | None) -> str | None:
        """For a ClickHouse limit error, which limit it was and the setting that raises it."""
        limits = {
            159: f"the query ran past {self.max_seconds:g} s (ANALYST_MAX_SECONDS)",
            241: f"the query needed more than {self.max_memory_mb} MiB of memory (ANALYST_MAX_MEMORY_MB)",
            158: f"the query read more than {self.max_rows_read} rows (ANALYST_MAX_ROWS_READ)",
            396: (
                f"the result is larger than {self.max_result_rows} rows or {self.max_result_mb} MiB"
                " (ANALYST_MAX_RESULT_ROWS, ANALYST_MAX_RESULT_MB)"
            ),
            394: "the query was cancelled (its client went away)",
        }
        return limits.get(code) if code is not None else None


def error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    match = _ERROR_CODE.search(str(exc))
    return int(match.group(1)) if match else None


def tag_of(query_id: str) -> str:
    return f"{_TAG_PREFIX}{query_id} */"


def new_query_id() -> str:
    return uuid.uuid4().hex


class AnalystSandbox:
    """A pool of read-only handles with limits; ``run`` takes one for the length of a query."""

    def __init__(self, open_handle: Callable[[Mapping[str, Any]], Any], limits: AnalystLimits) -> None:
        self._open_handle = open_handle
        self.limits = limits
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(limits.concurrency)
        self._lock = threading.Lock()
        self._all: list[Any] = []

    def run(self, sql: str, query_id: str, *, embedded: bool) -> Any:
        """Run one analyst statement; the result is clickhouse-connect's ``QueryResult``."""
        with self._handle() as handle:
            statement = self._normalised(handle, sql, embedded=embedded)
            wrapped = f"{tag_of(query_id)} SELECT * FROM (\n{statement}\n)"
            self._refuse_by_syntax_tree(handle, wrapped, embedded=embedded)
            return self._call(handle.query, wrapped, embedded=embedded, wrapped=True)

    def close(self) -> None:
        with self._lock:
            for handle in self._all:
                handle.close()
            self._all.clear()

    @contextmanager
    def _handle(self) -> Iterator[Any]:
        if not self._slots.acquire(timeout=BUSY_WAIT_S):
            raise SandboxBusy(
                f"{self.limits.concurrency} analyst queries are already running (ANALYST_CONCURRENCY);"
                " try again when one ends"
            )
        try:
            try:
                handle = self._idle.get_nowait()
            except queue.Empty:
                handle = self._open_handle(self.limits.session_settings())
                with self._lock:
                    self._all.append(handle)
            try:
                yield handle
            finally:
                self._idle.put(handle)
        finally:
            self._slots.release()

    def _normalised(self, handle: Any, sql: str, *, embedded: bool) -> str:
        result = self._call(
            handle.query, "SELECT formatQuerySingleLine({sql:String})", {"sql": sql}, embedded=embedded
        )
        return str(result.result_rows[0][0])

    def _refuse_by_syntax_tree(self, handle: Any, wrapped: str, *, embedded: bool) -> None:
        """Refuse, from ClickHouse's own parse, what read-only mode would pass over in silence."""
        explained = self._call(handle.query, f"EXPLAIN AST {wrapped}", embedded=embedded, wrapped=True)
        tree = "\n".join(str(row[0]) for row in explained.result_rows)
        if _AST_SETTINGS.search(tree):
            raise QueryError(
                "read-only: an analyst query may not change settings (SETTINGS); its limits are the"
                " ANALYST_* settings of the engine"
            )
        forbidden = sorted(set(_AST_FUNCTION.findall(tree)) & FORBIDDEN_FUNCTIONS)
        if forbidden:
            raise QueryError(
                f"not allowed: {', '.join(forbidden)}() reads files; analysts may read the event tables"
                " and views only"
            )

    def _call(
        self,
        method: Callable[..., Any],
        sql: str,
        parameters: Any = None,
        *,
        embedded: bool,
        wrapped: bool = False,
    ) -> Any:
        try:
            return method(sql, parameters=parameters)
        except OperationalError as exc:
            if not isinstance(exc, StreamFailureError) and not embedded:
                raise StoreUnavailable(str(exc).strip()) from None
            raise QueryError(self._message(exc, wrapped)) from None
        except ClickHouseError as exc:
            raise QueryError(self._message(exc, wrapped)) from None

    def _message(self, exc: BaseException, wrapped: bool) -> str:
        code = error_code(exc)
        text = str(exc).strip()
        limit = self.limits.explain(code)
        if limit is not None:
            return f"{limit}: {text}"
        if code == 62 and wrapped:  # the statement parsed alone, so only the subquery refused it
            return (
                "only one SELECT statement, without INTO OUTFILE, FORMAT or SETTINGS, is allowed"
                f" (ClickHouse: {text})"
            )
        if code == 497:
            return f"not allowed: analysts may read the event tables and views only (ClickHouse: {text})"
        if code == 164:
            return f"read-only: analysts may not write or change settings (ClickHouse: {text})"
        return text
