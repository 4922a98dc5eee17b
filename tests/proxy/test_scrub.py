"""The scrubber: provider keys, app keys and masked echoes out of error bodies and log records."""

from __future__ import annotations

import logging

import pytest

from proxy.edge.scrub import MASK, Scrubber, install_log_scrubber
from simulator.wire import masked

PROVIDER_KEY = "sk-proj-Q2w3E4r5T6y7U8i9O0pLkJhGfDsA"
APP_KEY = "sk-sym-abcd1234-" + "Zx_9" * 10 + "Zx9"


def test_known_keys_app_keys_and_masked_echoes_become_a_mask() -> None:
    scrubber = Scrubber([PROVIDER_KEY, "short"])
    text = (
        f"Incorrect API key provided: {masked(PROVIDER_KEY)}. Also {PROVIDER_KEY}, "
        f"app {APP_KEY}, and sk-ab...9OpL. Please try again... later."
    )
    scrubbed = scrubber.text(text)
    assert PROVIDER_KEY not in scrubbed and masked(PROVIDER_KEY) not in scrubbed
    assert APP_KEY not in scrubbed and "sk-sym-abcd1234-***" in scrubbed  # the public prefix stays
    assert "sk-ab...9OpL" not in scrubbed and "Please try again... later." in scrubbed
    assert scrubbed.count(MASK) == 4
    assert Scrubber(["short"]).text("a short word") == "a short word"  # too short to be a secret
    body = b'{"error": {"message": "key ' + PROVIDER_KEY.encode() + b'"}}'
    assert scrubber.bytes(body) == b'{"error": {"message": "key ***"}}'
    clean = b'{"error": {"message": "nothing here"}}'
    assert scrubber.bytes(clean) is clean


def test_log_records_are_scrubbed_when_made(caplog: pytest.LogCaptureFixture) -> None:
    install_log_scrubber([PROVIDER_KEY])
    install_log_scrubber([PROVIDER_KEY])  # idempotent
    log = logging.getLogger("proxy.test_scrub")
    with caplog.at_level(logging.INFO, logger="proxy.test_scrub"):
        log.info("upstream said %s for %s", PROVIDER_KEY, APP_KEY)
        try:
            raise ValueError(f"bad key {PROVIDER_KEY}")
        except ValueError:
            log.exception("failed with %r", {"authorization": f"Bearer {PROVIDER_KEY}"})
    text = caplog.text
    assert PROVIDER_KEY not in text and APP_KEY not in text
    assert "upstream said *** for sk-sym-abcd1234-***" in text
    assert "ValueError: bad key ***" in text
    assert all(record.args is None for record in caplog.records)
