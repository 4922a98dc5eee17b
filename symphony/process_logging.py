"""How a long-running process logs: INFO and up to stderr (`symphony up` keeps it in var/logs/<part>.log).

``LOG_FORMAT`` (``Settings.log_format``) picks the line: ``text`` (time, logger, level, message)
or ``json`` (one object a line: ``ts``, ``level``, ``logger``, ``message``). A record may carry
structured fields as ``extra={"fields": {...}}`` (the proxy's access line does): ``text`` appends
them as ``key=value`` (values other than plain words as JSON), ``json`` puts them in the object.
Fields bypass the proxy's log scrubbing, which cleans the message: they must hold no secret.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

import orjson

LogFormat = Literal["text", "json"]
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
_PLAIN = re.compile(r"[\w./:@+-]+")  # a value shown as it is in a text line; else as JSON


def record_fields(record: logging.LogRecord) -> Mapping[str, Any]:
    """The structured fields a record carries (``extra={"fields": ...}``), else none."""
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _text_value(value: Any) -> str:
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    return orjson.dumps(value, default=str).decode()


class TextFormatter(logging.Formatter):
    """``LOG_FORMAT``, then the record's fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = record_fields(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())


def _utc_timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC, to the millisecond: ``2026-12-01T16:50:02.114Z``."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the
    record's fields, and ``exception`` when it has one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _utc_timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(record_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def log_to_stderr(log_format: LogFormat = "text") -> None:
    """Configure the root logger once per process (a process that configured it already keeps its own)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # What neither line shows a record need not gather (the logging HOWTO's "Optimization"): the
    # caller's file and line, its thread and process; 8 us of the proxy's 30 us access line.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
