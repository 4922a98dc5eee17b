"""SLO alerts out of the dataflow: Alertmanager, Slack and PagerDuty, each as its service documents it.

- **Alertmanager** (``ALERTMANAGER_URL``): every alert, firing or refreshed or resolved, is
  posted to ``/api/v2/alerts`` with its labels, annotations (``summary``, ``trace_url``,
  ``decision_id``) and ``startsAt``; a resolution carries ``endsAt``. Alertmanager groups,
  deduplicates and routes them; an alert not refreshed within its ``resolve_timeout``
  resolves by itself.
- **Slack** (``SLACK_WEBHOOK_URL``, an incoming webhook) and **PagerDuty** (Events API v2,
  ``PAGERDUTY_ROUTING_KEY``) are for deployments without Alertmanager: they receive the
  transitions only (fired, resolved), PagerDuty with ``dedup_key`` = the alert's id so its
  resolution closes the incident it opened.

Sending never holds up the dataflow: alerts go into a bounded queue that a thread drains;
when a destination is down an alert is retried once, then dropped and counted (the
``alerts`` table in ClickHouse keeps every transition whatever the destinations did).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from typing_extensions import override

from symphony import clock
from symphony.alerts import Alert
from symphony.background_thread import BackgroundThread
from symphony.settings import Settings

log = logging.getLogger(__name__)

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
QUEUE_SIZE = 1000
TIMEOUT_S = 5.0
TRACE_LINK_TEXT = "Trace of a request that breached"


class Destination(Protocol):
    @property
    def name(self) -> str: ...

    def wants(self, alert: Alert) -> bool: ...

    def send(self, client: httpx.Client, alerts: Sequence[Alert]) -> None:
        """Raises ``httpx.HTTPError`` when the destination did not take them."""


def _iso(ms: int) -> str:
    return clock.utc_datetime(ms).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Alertmanager:
    url: str
    trace_url_template: str
    name: str = "alertmanager"

    def wants(self, alert: Alert) -> bool:
        return True

    def send(self, client: httpx.Client, alerts: Sequence[Alert]) -> None:
        client.post(
            f"{self.url.rstrip('/')}/api/v2/alerts", json=[self.payload(a) for a in alerts]
        ).raise_for_status()

    def payload(self, alert: Alert) -> dict[str, Any]:
        trace_url = alert.trace_url(self.trace_url_template)
        body: dict[str, Any] = {
            "labels": {
                "alertname": alert.name,
                "service": "symphony",
                "provider": alert.provider,
                "model": alert.model,
                "objective": alert.objective,
                "severity": "page" if alert.objective == "error_rate" else "warning",
            },
            "annotations": {
                "summary": alert.summary,
                "value": f"{alert.value:g}",
                "threshold": f"{alert.threshold:g}",
                "trace_url": trace_url,
                "trace_id": alert.trace_id,
                "decision_id": alert.decision_id,
            },
            "startsAt": _iso(alert.started_ms),
            "generatorURL": trace_url,
        }
        if alert.status == "resolved":
            body["endsAt"] = _iso(alert.at_ms)
        return body


@dataclass(frozen=True)
class Slack:
    webhook_url: str
    trace_url_template: str
    name: str = "slack"

    def wants(self, alert: Alert) -> bool:
        return alert.transition

    def send(self, client: httpx.Client, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            client.post(self.webhook_url, json=self.payload(alert)).raise_for_status()

    def payload(self, alert: Alert) -> dict[str, Any]:
        icon = ":rotating_light:" if alert.status == "firing" else ":white_check_mark:"
        text = f"{icon} {alert.status.upper()} {alert.name}: {alert.summary}"
        trace_url = alert.trace_url(self.trace_url_template)
        link = f"\n<{trace_url}|{TRACE_LINK_TEXT}>" if trace_url else ""
        return {
            "text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text + link}}],
        }


@dataclass(frozen=True)
class PagerDuty:
    routing_key: str
    trace_url_template: str
    events_url: str = PAGERDUTY_EVENTS_URL
    name: str = "pagerduty"

    def wants(self, alert: Alert) -> bool:
        return alert.transition

    def send(self, client: httpx.Client, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            client.post(self.events_url, json=self.payload(alert)).raise_for_status()

    def payload(self, alert: Alert) -> dict[str, Any]:
        event: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "trigger" if alert.status == "firing" else "resolve",
            "dedup_key": alert.alert_id,
        }
        if alert.status == "resolved":
            return event
        trace_url = alert.trace_url(self.trace_url_template)
        event["payload"] = {
            "summary": alert.summary,
            "source": "symphony",
            "severity": "critical" if alert.objective == "error_rate" else "warning",
            "timestamp": _iso(alert.at_ms),
            "component": alert.provider,
            "group": f"{alert.provider}/{alert.model}",
            "class": alert.objective,
            "custom_details": {
                "value": alert.value,
                "threshold": alert.threshold,
                "trace_id": alert.trace_id,
                "decision_id": alert.decision_id,
            },
        }
        event["links"] = (
            [{"href": trace_url, "text": "Trace of a request that breached"}] if trace_url else []
        )
        return event


@dataclass
class Delivery(BackgroundThread):
    """The thread that sends queued alerts to every destination that wants them."""

    destinations: Sequence[Destination]
    pending: queue.Queue[Alert] = field(default_factory=lambda: queue.Queue(QUEUE_SIZE))
    dropped: int = 0
    sent: int = 0
    thread_name = "alert-delivery"

    def __post_init__(self) -> None:
        super().__init__()

    def offer(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            try:
                self.pending.put_nowait(alert)
            except queue.Full:
                self.dropped += 1
                log.warning("alert queue full: %s %s dropped", alert.status, alert.alert_id)

    def _run(self) -> None:
        with httpx.Client(timeout=TIMEOUT_S) as client:
            while not self._stop.is_set():
                try:
                    first = self.pending.get(timeout=0.2)
                except queue.Empty:
                    continue
                self._deliver(client, [first, *self._drain()])

    def _drain(self) -> list[Alert]:
        alerts = []
        while True:
            try:
                alerts.append(self.pending.get_nowait())
            except queue.Empty:
                return alerts

    def _deliver(self, client: httpx.Client, alerts: list[Alert]) -> None:
        for destination in self.destinations:
            wanted = [a for a in alerts if destination.wants(a)]
            if wanted:
                self._send(client, destination, wanted)

    def _send(self, client: httpx.Client, destination: Destination, alerts: list[Alert]) -> None:
        for attempt in (1, 2):
            try:
                destination.send(client, alerts)
                self.sent += len(alerts)
                return
            except httpx.HTTPError as exc:
                if attempt == 2:
                    self.dropped += len(alerts)
                    log.warning("%s did not take %d alert(s): %s", destination.name, len(alerts), _why(exc))
                elif self._stop.wait(0.5):
                    return


def alert_destinations(settings: Settings) -> list[Destination]:
    """The destinations the settings name (none: alerts only land in ClickHouse)."""
    template = settings.resolved_trace_url_template
    destinations: list[Destination] = []
    if settings.alertmanager_url:
        destinations.append(Alertmanager(settings.alertmanager_url, template))
    if settings.slack_webhook_url is not None:
        destinations.append(Slack(settings.slack_webhook_url.get_secret_value(), template))
    if settings.pagerduty_routing_key is not None:
        key = settings.pagerduty_routing_key.get_secret_value()
        destinations.append(PagerDuty(key, template, settings.pagerduty_events_url))
    return destinations


def _why(exc: httpx.HTTPError) -> str:
    """What went wrong, without the URL: a Slack webhook's URL is its secret."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


class AlertSink(DynamicSink[Alert]):
    """The SLO branch's alerts into the delivery thread (started by the engine, one per process)."""

    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition[Alert]:
        return _AlertPartition(self._delivery)


class _AlertPartition(StatelessSinkPartition[Alert]):
    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery

    @override
    def write_batch(self, items: list[Alert]) -> None:
        self._delivery.offer(items)
