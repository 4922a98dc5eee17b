"""Secrets out of text: provider keys, app keys and masked echoes of either become ``***``.

A ``Scrubber`` knows the provider keys the proxy holds and replaces each wherever
it appears. App keys it cannot know (Redis holds only their hashes), but their
shape is fixed, so any ``sk-sym-<prefix>-<secret>`` keeps its public prefix and
loses its secret. Providers echo a masked key when they refuse one (OpenAI's
``Incorrect API key provided: sk-proj-****…abcd``); a masked token (three or more
``*``, or ``...``/``…`` between key characters) goes too, since its visible ends
are pieces of a real key.

The proxy scrubs provider error bodies before a client sees them
(``proxy.attempts.attempt_loop``) and every log record its process writes
(``install_log_scrubber``): the message with its arguments and any exception text
are scrubbed when the record is made, so no handler, formatter or test capture
ever holds the raw text.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable
from typing import Any

# The key shapes and the shortest secret worth the name are shared with evidence redaction.
from symphony.redaction import APP_KEY, MASKED_KEY, MIN_SECRET_CHARS

MASK = "***"


class Scrubber:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        known = set(self._secrets)
        known.update(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
        self._secrets = sorted(known, key=len, reverse=True)  # a longer secret before its prefix

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets it knows (for the evidence redactor, which masks them too)."""
        return tuple(self._secrets)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "*" in text or "." in text or "…" in text:
            text = MASKED_KEY.sub(MASK, text)
        if "sk-sym-" in text:
            text = APP_KEY.sub(rf"\g<1>{MASK}", text)
        return text

    def bytes(self, data: bytes) -> bytes:
        text = data.decode("utf-8", "replace")
        scrubbed = self.text(text)
        return data if scrubbed == text else scrubbed.encode()


# --- logs --------------------------------------------------------------------------------------

# One per process, as logging's record factory is: every proxy app built in the process adds its keys.
LOG_SCRUBBER = Scrubber()


class _ScrubbingFactory:
    def __init__(self, make: Callable[..., logging.LogRecord], scrubber: Scrubber) -> None:
        self._make = make
        self.scrubber = scrubber

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self._make(*args, **kwargs)
        scrub_record(record, self.scrubber)
        return record


def install_log_scrubber(secrets: Iterable[str]) -> None:
    """Scrub every log record this process makes from now on (idempotent; adds ``secrets``)."""
    LOG_SCRUBBER.add(secrets)
    if not isinstance(logging.getLogRecordFactory(), _ScrubbingFactory):
        logging.setLogRecordFactory(_ScrubbingFactory(logging.getLogRecordFactory(), LOG_SCRUBBER))


def scrub_record(record: logging.LogRecord, scrubber: Scrubber) -> None:
    """Format the record's message and exception now, scrubbed; formatters then use them as they are."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep its parts, scrubbed, rather than lose the record
        message = f"{record.msg!s} {record.args!r}"
    record.msg, record.args = scrubber.text(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = scrubber.text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = scrubber.text(record.stack_info)
