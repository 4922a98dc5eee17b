"""Alert delivery: a destination that is down costs a retry and a count, and its secret URL stays out
of the log; Slack gets transitions only."""

from __future__ import annotations

import logging

import pytest

from sinks.alerts import Alertmanager, Delivery, Slack
from symphony.alerts import Alert
from symphony.redis_server import free_port
from tests.recording_server import recording_server
from tests.waiting import wait_until

FIRED = Alert(
    "firing",
    "error_rate",
    "grok",
    "grok-3-mini",
    0.3,
    0.02,
    1000,
    1000,
    60_000,
    40,
    "ab" * 16,
    "d1",
    first=True,
)
REFRESHED = Alert(
    "firing", "error_rate", "grok", "grok-3-mini", 0.3, 0.02, 1000, 2000, 60_000, 40, "ab" * 16, "d1"
)


def test_a_destination_down_is_counted_and_its_secret_url_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    webhook = f"http://127.0.0.1:{free_port()}/services/T000/B000/secret-webhook-token"
    delivery = Delivery([Slack(webhook, "https://t/{trace_id}")])
    delivery.start()
    try:
        with caplog.at_level(logging.WARNING, logger="sinks.alerts"):
            delivery.offer([FIRED])
            wait_until(lambda: delivery.dropped == 1)
    finally:
        delivery.stop()
    assert delivery.dropped == 1 and delivery.sent == 0
    assert "slack did not take 1 alert(s): ConnectError" in caplog.text
    assert "secret-webhook-token" not in caplog.text


def test_slack_gets_transitions_only_and_alertmanager_every_refresh() -> None:
    with recording_server() as (server, calls):
        delivery = Delivery(
            [
                Alertmanager(server.url, "https://t/{trace_id}"),
                Slack(f"{server.url}/slack", "https://t/{trace_id}"),
            ]
        )
        delivery.start()
        try:
            delivery.offer([FIRED, REFRESHED])
            wait_until(lambda: delivery.sent == 3)
        finally:
            delivery.stop()
        posted = [a for body in calls.on("/api/v2/alerts") for a in body]
        assert len(posted) == 2 and len(calls.on("/slack")) == 1
        assert all("endsAt" not in a for a in posted)
        assert posted[0]["annotations"]["trace_url"] == "https://t/" + "ab" * 16
