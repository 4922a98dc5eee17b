"""How a long-running process logs: INFO and up to stderr (`symphony up` keeps it in var/logs/<part>.log)."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def log_to_stderr() -> None:
    """Configure the root logger once per process (a process that configured it already keeps its own)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
