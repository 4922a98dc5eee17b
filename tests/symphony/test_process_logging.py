"""A process's log lines: text by default, one JSON object a line with LOG_FORMAT=json, fields in both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from symphony.settings import SettingsError, load_settings

# What a process does at start (cli/main.py, the proxy's workers, the engine), then three lines.
PROGRAM = """
import logging
from symphony.process_logging import log_to_stderr
from symphony.settings import load_settings

log_to_stderr(load_settings().log_format)
access = logging.getLogger("symphony.access")
access.info("request", extra={"fields": {"decision_id": "d-1", "arm": "openai/gpt-4o", "status": 200,
    "latency_ms": 12.5, "fallbacks": [{"arm": "perplexity/sonar", "status": "5xx"}], "note": "two words",
    "stream": False, "error": None}})
logging.getLogger("uvicorn.error").warning("port %d is taken", 8700)
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("engine").exception("step failed")
"""


def _stderr_lines(program: str = PROGRAM, **env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stderr.splitlines()


def test_json_format_makes_every_line_a_json_object() -> None:
    lines = [json.loads(line) for line in _stderr_lines(LOG_FORMAT="json")]
    assert len(lines) == 3
    access, uvicorn, failure = lines
    assert access == {
        "ts": access["ts"],
        "level": "INFO",
        "logger": "symphony.access",
        "message": "request",
        "decision_id": "d-1",
        "arm": "openai/gpt-4o",
        "status": 200,
        "latency_ms": 12.5,
        "fallbacks": [{"arm": "perplexity/sonar", "status": "5xx"}],
        "note": "two words",
        "stream": False,
        "error": None,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", access["ts"])
    assert (uvicorn["logger"], uvicorn["level"], uvicorn["message"]) == (
        "uvicorn.error",
        "WARNING",
        "port 8700 is taken",
    )
    assert failure["message"] == "step failed" and "ZeroDivisionError" in failure["exception"]


def test_text_format_appends_the_fields_as_key_value() -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() != "LOG_FORMAT"}
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    access = result.stderr.splitlines()[0]
    assert access.endswith(
        " symphony.access INFO request decision_id=d-1 arm=openai/gpt-4o status=200 latency_ms=12.5 "
        'fallbacks=[{"arm":"perplexity/sonar","status":"5xx"}] note="two words" stream=false error=null'
    )
    assert "Traceback" in result.stderr and not result.stderr.lstrip().startswith("{")


def test_an_unknown_log_format_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="LOG_FORMAT='xml': expected text or json"):
        load_settings()


# The same fields logged through logging and through log_fields, as a configured process does.
BOTH_WAYS = """
import logging
from symphony.process_logging import log_fields, log_to_stderr
from symphony.settings import load_settings

log_to_stderr(load_settings().log_format)
access = logging.getLogger("symphony.access")
fields = {"decision_id": "d-1", "arm": None, "status": 200, "latency_ms": 0.5, "stream": False,
    "fallbacks": [{"arm": "perplexity/sonar", "status": "5xx", "http_status": 502}], "note": "two words"}
access.info("request", extra={"fields": fields})
log_fields(access, "request", fields)
logging.getLogger().addHandler(logging.StreamHandler())  # a second handler: log_fields goes through logging
log_fields(access, "request", {"decision_id": "d-2"})
"""


def _without_time(line: str, log_format: str) -> str:
    if log_format == "json":
        parsed = json.loads(line)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed.pop("ts"))
        return json.dumps(parsed)
    stamp, rest = line[:23], line[23:]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", stamp)
    return rest


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_fields_writes_the_line_a_logging_call_writes(log_format: str) -> None:
    logged, direct, *second_handler = _stderr_lines(LOG_FORMAT=log_format, program=BOTH_WAYS)
    assert _without_time(direct, log_format) == _without_time(logged, log_format)
    assert " request" in logged or '"message": "request"' in _without_time(logged, log_format)
    # With a handler log_to_stderr did not install, the line went through logging: both handlers wrote it.
    assert len(second_handler) == 2 and "d-2" in second_handler[0]
