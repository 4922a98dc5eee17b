"""Evidence on SLO alerts: an alert destination that captures a bundle when an alert fires.

The alert delivery thread (``sinks.alerts.Delivery``) hands every firing transition to
``EvidenceOnAlert``, which queues it for a thread of its own: a capture waits for the
exemplar's decision to reach ClickHouse (the SLO branch can judge before the sink has
written) and calls ticket systems, and must not hold up Alertmanager, Slack or PagerDuty.
Refreshes are no new evidence; an arm that fires again is (its incident gets a comment).
The engine always installs it; the live flag ``evidence_bundles`` (``EVIDENCE_BUNDLES``, then
``symphony flags --evidence on|off``) says whether a firing alert is captured.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Sequence

import httpx

from sinks.evidence.capture import CaptureError
from sinks.evidence.service import EvidenceService, Outcome
from symphony.alerts import Alert
from symphony.background_thread import BackgroundThread

log = logging.getLogger(__name__)

QUEUE_SIZE = 100
DECISION_WAIT_S = 20.0
RETRY_EVERY_S = 0.5


class EvidenceOnAlert(BackgroundThread):
    name = "evidence"
    thread_name = "evidence-capture"

    def __init__(self, service: EvidenceService, enabled: Callable[[], bool]) -> None:
        super().__init__()
        self._service = service
        self._enabled = enabled  # the live flag: off, an alert that fires gets no bundle
        self._pending: queue.Queue[Alert] = queue.Queue(QUEUE_SIZE)
        self.outcomes: list[Outcome] = []

    # the alert Destination contract
    def wants(self, alert: Alert) -> bool:
        return alert.first and alert.status == "firing" and bool(alert.decision_id) and self._enabled()

    def send(self, client: httpx.Client, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            try:
                self._pending.put_nowait(alert)
            except queue.Full:
                log.warning("evidence queue full: no bundle for %s", alert.alert_id)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                alert = self._pending.get(timeout=0.2)
            except queue.Empty:
                continue
            self._capture(alert)

    def _capture(self, alert: Alert) -> None:
        waited = 0.0
        while True:
            try:
                outcome = self._service.capture(
                    alert.decision_id,
                    fingerprint=alert.fingerprint,
                    incident_id=alert.alert_id,
                    at_ms=alert.at_ms,
                    alert=alert.as_dict(),
                    trigger="slo_alert",
                )
            except CaptureError as exc:  # the decision not in ClickHouse yet: wait for the sink
                if waited >= DECISION_WAIT_S or self._stop.wait(RETRY_EVERY_S):
                    log.warning("no evidence bundle for %s: %s", alert.alert_id, exc)
                    return
                waited += RETRY_EVERY_S
                continue
            except Exception:
                log.exception("evidence capture for %s failed", alert.alert_id)
                return
            self.outcomes.append(outcome)
            log.info("evidence bundle %s for %s", outcome.bundle, alert.alert_id)
            return
