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
    "latency_ms": 12.5, "fallbacks": [{"arm": "perplexity/sonar", "status": "5xx"}], "note": "two words"}})
logging.getLogger("uvicorn.error").warning("port %d is taken", 8700)
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("engine").exception("step failed")
"""


def _stderr_lines(**env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
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
        'fallbacks=[{"arm":"perplexity/sonar","status":"5xx"}] note="two words"'
    )
    assert "Traceback" in result.stderr and not result.stderr.lstrip().startswith("{")


def test_an_unknown_log_format_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="LOG_FORMAT='xml': expected text or json"):
        load_settings()
