"""How a long-running process logs: INFO and up to stderr (`symphony up` keeps it in var/logs/<part>.log).

``LOG_FORMAT`` (``Settings.log_format``) picks the line: ``text`` (time, logger, level, message)
or ``json`` (one object a line: ``ts``, ``level``, ``logger``, ``message``). A record may carry
structured fields as ``extra={"fields": {...}}`` (the proxy's access line does): ``text`` appends
them as ``key=value`` (values other than plain words as JSON), ``json`` puts them in the object.
Fields bypass the proxy's log scrubbing, which cleans the message: they must hold no secret.

``log_fields`` writes such a line for a hot path (one a request): while the process logs as
``log_to_stderr`` set it up, it formats the line itself and writes it to that handler's stream,
without the ``LogRecord``, record factory, filters and ``Formatter`` machinery a logging call goes
through (114k of the proxy's 2.2M instructions a request, under callgrind); anywhere else (a test's
capture, another handler) it is an ordinary logging call. Both give the same line.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import orjson

from symphony.clock import wall_seconds

LogFormat = Literal["text", "json"]
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_PLAIN = re.compile(r"[\w./:@+-]+")  # a value shown as it is in a text line; else as JSON


def record_fields(record: logging.LogRecord) -> Mapping[str, Any]:
    """The structured fields a record carries (``extra={"fields": ...}``), else none."""
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _text_fields(fields: Mapping[str, Any]) -> str:
    """The fields as a text line shows them: `` key=value`` each, values other than plain words as JSON."""
    return "".join(f" {key}={_text_value(value)}" for key, value in fields.items())


def _text_value(value: Any) -> str:
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    kind = type(value)
    # What orjson writes for these, without a call to it: an access line has four.
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is int:
        return str(value)
    return orjson.dumps(value, default=str).decode()


class TextFormatter(logging.Formatter):
    """``LOG_FORMAT``, then the record's fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record) + _text_fields(record_fields(record))

    def line(self, logger: str, message: str, fields: Mapping[str, Any], created: float) -> str:
        """What ``format`` makes of an INFO record of ``logger`` with no arguments or exception."""
        return f"{_local_time(created)} {logger} INFO {message}{_text_fields(fields)}"


def _local_time(created: float) -> str:
    """``logging.Formatter.formatTime``'s default, ``2026-12-01 16:50:02,114``; a second's text made once."""
    return f"{_local_second(int(created))},{_msecs(created):03d}"


def _msecs(created: float) -> int:
    """The milliseconds of ``created``'s second, as ``LogRecord.msecs`` has them."""
    return int((created - int(created)) * 1000)


@functools.lru_cache(maxsize=2)
def _local_second(second: int) -> str:
    return time.strftime(logging.Formatter.default_time_format, time.localtime(second))


def _utc_timestamp(created: float) -> str:
    """ISO 8601 in UTC, to the millisecond: ``2026-12-01T16:50:02.114Z``."""
    return f"{_utc_second(int(created))}.{_msecs(created):03d}Z"


@functools.lru_cache(maxsize=2)
def _utc_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the
    record's fields, and ``exception`` when it has one."""

    def format(self, record: logging.LogRecord) -> str:
        line = _json_object(
            record.created, record.levelname, record.name, record.getMessage(), record_fields(record)
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()

    def line(self, logger: str, message: str, fields: Mapping[str, Any], created: float) -> str:
        """What ``format`` makes of an INFO record of ``logger`` with no arguments or exception."""
        return orjson.dumps(_json_object(created, "INFO", logger, message, fields), default=str).decode()


def _json_object(
    created: float, level: str, logger: str, message: str, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """A JSON line's object before any exception: its head, then the fields."""
    return {"ts": _utc_timestamp(created), "level": level, "logger": logger, "message": message, **fields}


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def log_to_stderr(log_format: LogFormat = "text") -> None:
    """Configure the root logger once per process (a process that configured it already keeps its own)."""
    handler = _FieldsHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # What neither line shows a record need not gather (the logging HOWTO's "Optimization"): the
    # caller's file and line, its thread and process; 8 us of the proxy's 30 us access line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


class _FieldsHandler(logging.StreamHandler[TextIO]):
    """The handler ``log_to_stderr`` installs: a ``StreamHandler`` that ``log_fields`` recognises."""


def log_fields(logger: logging.Logger, message: str, fields: Mapping[str, Any]) -> None:
    """``logger.info(message, extra={"fields": fields})``, the same line, made for a hot path.

    ``message`` is written as it is (a constant: the log scrubber does not see it). Callers check
    ``logger.isEnabledFor(logging.INFO)`` first, as they would before building the fields.
    """
    if logger.disabled:
        return
    handler = _only_handler(logger)
    formatter = handler.formatter if handler is not None else None
    if handler is None or not isinstance(formatter, TextFormatter | JsonFormatter):
        logger.info(message, extra={"fields": fields})
        return
    line = formatter.line(logger.name, message, fields, wall_seconds())
    handler.acquire()
    try:
        handler.stream.write(line + handler.terminator)
        handler.stream.flush()
    except Exception:  # as StreamHandler.emit: a failed write is reported, never raised to the caller
        handler.handleError(logging.makeLogRecord({"name": logger.name, "msg": message}))
    finally:
        handler.release()


def _only_handler(logger: logging.Logger) -> _FieldsHandler | None:
    """The one handler a record of ``logger`` at INFO would reach, when it is ``log_to_stderr``'s and
    nothing on the way filters; else None (the record must go through logging)."""
    found: _FieldsHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if found is not None or type(handler) is not _FieldsHandler or handler.filters:
                return None
            if handler.level > logging.INFO:
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found
