"""An incident's evidence, end to end: gather, build, write, record, ticket.

``EvidenceService.capture`` builds the bundle of one decision (an alert's exemplar, a failed
chaos scenario's, or one an operator names), writes it under ``VAR_DIR/evidence``, opens a
ticket per configured system for a new incident (keyed by its fingerprint) or comments on
the one it has, and records the bundle with its ticket links in ``evidence_bundles``. A
ticket system that fails is named in the outcome; the others and the bundle still count.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import redis

from sinks.evidence.bundle import Bundle, build_bundle
from sinks.evidence.capture import CaptureError, RowReader, Sources, checked_decision_id, gather
from sinks.evidence.inputs import IncidentInputs
from sinks.evidence.records import ArrowWriter, record_bundle, write_bundle
from sinks.tickets.github_issues import GitHubIssues
from sinks.tickets.jira_issues import JiraIssues
from sinks.tickets.ledger import TicketLedger
from sinks.tickets.ticket import TicketError, TicketNote, TicketSystem
from symphony import clock
from symphony.catalog import load_catalog
from symphony.redaction import Redactor
from symphony.redis_client import sync_redis
from symphony.secret_files import read_secret
from symphony.settings import Settings, SettingsError

log = logging.getLogger(__name__)


def software_version() -> str:
    return f"symphony {version('symphony')}"


@dataclass
class Outcome:
    bundle: str  # the file written
    sha256: str
    incident_id: str
    opened: list[str] = field(default_factory=list)  # ticket URLs opened now
    commented: list[str] = field(default_factory=list)  # ticket URLs commented on
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "sha256": self.sha256,
            "incident_id": self.incident_id,
            "tickets_opened": self.opened,
            "tickets_commented": self.commented,
            "errors": self.errors,
        }


def ticket_systems(settings: Settings) -> list[TicketSystem]:
    """The ticket systems the settings configure; a half-configured one is a ``SettingsError``."""
    systems: list[TicketSystem] = []
    if settings.evidence_github_repository:
        token = _secret(
            settings.evidence_github_token, settings.evidence_github_token_file, "EVIDENCE_GITHUB"
        )
        repository, api_url = settings.evidence_github_repository, settings.evidence_github_api_url
        systems.append(GitHubIssues(repository, token, api_url))
    if settings.jira_project:
        token = _secret(settings.jira_api_token, settings.jira_api_token_file, "JIRA_API")
        for name, value in (("JIRA_URL", settings.jira_url), ("JIRA_EMAIL", settings.jira_email)):
            if not value:
                raise SettingsError(f"invalid setting {name}: not set; JIRA_PROJECT needs it")
        systems.append(JiraIssues(settings.jira_url, settings.jira_email, token, settings.jira_project))
    return systems


def _secret(value: Any, file: str, prefix: str) -> str:
    """The token from its setting, else from its file; ``SettingsError`` naming what to set."""
    if value is not None:
        return str(value.get_secret_value())
    if not file:
        raise SettingsError(f"invalid setting {prefix}_TOKEN: not set (nor {prefix}_TOKEN_FILE)")
    token = read_secret(Path(file))
    if not token:
        raise SettingsError(f"invalid setting {prefix}_TOKEN_FILE={file!r}: no such file, or empty")
    return token


def secrets_held(settings: Settings, provider_keys: Sequence[str]) -> list[str]:
    """Every secret this process holds: masked by value wherever it turns up."""
    held = list(provider_keys)
    for setting in (
        settings.admin_token, settings.analyst_token, settings.spans_token, settings.decision_key,
        settings.dispatcher_token, settings.slack_webhook_url, settings.pagerduty_routing_key,
        settings.evidence_github_token, settings.jira_api_token,
    ):  # fmt: skip
        if setting is not None:
            held.append(setting.get_secret_value())
    for role in ("admin", "analyst", "spans"):
        token = read_secret(settings.token_file(role))
        if token:
            held.append(token)
    for path in (settings.evidence_github_token_file, settings.jira_api_token_file):
        token = read_secret(Path(path)) if path else None
        if token:
            held.append(token)
    return held


def note_for(inputs: IncidentInputs, bundle: Bundle, redactor: Redactor) -> TicketNote:
    alert = inputs.alert or {}
    title = str(alert.get("summary") or f"Evidence for decision {inputs.decision.get('decision_id', '')}")
    lines = [
        f"Incident: {inputs.incident_id} ({inputs.trigger})",
        f"Alert: {alert.get('name', '-')} {alert.get('alert_id', '')}",
        f"Decision: {inputs.decision.get('decision_id', '')} on {inputs.decision.get('provider', '')}"
        f"/{inputs.decision.get('model', '')}",
        f"Trace: {inputs.trace_url or inputs.decision.get('trace_id', '-')}",
        f"Attempts: {', '.join(str(u.get('status')) for u in inputs.usage) or '-'}",
        "Verify with: symphony evidence verify " + bundle.name,
    ]
    body = redactor.text("\n".join(lines))
    return TicketNote(f"[Symphony] {redactor.text(title)}", body, bundle.name, bundle.data, bundle.sha256)


TRIGGERS = ("on_demand", "chaos_scenario", "slo_alert")
FINGERPRINT = re.compile(r"[A-Za-z0-9:/._\-]{1,200}")


@dataclass(frozen=True)
class EvidenceRequest:
    """A capture asked over the engine's API (``POST /evidence/capture``), checked."""

    decision_id: str
    trigger: str = "on_demand"
    fingerprint: str = ""
    incident_id: str = ""

    @classmethod
    def from_json(cls, body: Any) -> EvidenceRequest:
        if not isinstance(body, dict) or not isinstance(body.get("decision_id"), str):
            raise ValueError('expected a JSON body {"decision_id": "...", "trigger"?, "fingerprint"?}')
        unknown = sorted(set(body) - {"decision_id", "trigger", "fingerprint", "incident_id"})
        if unknown:
            raise ValueError(
                f"unknown field(s) {unknown}: expected decision_id, trigger, fingerprint, incident_id"
            )
        asked = cls(**body)
        try:
            checked_decision_id(asked.decision_id)
        except CaptureError as exc:
            raise ValueError(str(exc)) from None
        if asked.trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {', '.join(TRIGGERS)}, not {asked.trigger!r}")
        for name in ("fingerprint", "incident_id"):
            value = getattr(asked, name)
            if not isinstance(value, str) or (value and not FINGERPRINT.fullmatch(value)):
                raise ValueError(f"{name} must be 1 to 200 letters, digits or :/._- (or absent)")
        return asked


EvidenceCapture = Callable[[EvidenceRequest], dict[str, Any]]


@dataclass
class EvidenceService:
    sources: Sources
    writer: ArrowWriter | None
    redactor: Redactor
    tickets: Sequence[TicketSystem]
    ledger: TicketLedger | None
    var_dir: Path

    def capture(
        self,
        decision_id: str,
        *,
        fingerprint: str = "",
        incident_id: str = "",
        at_ms: int | None = None,
        alert: dict[str, Any] | None = None,
        trigger: str = "on_demand",
    ) -> Outcome:
        inputs = gather(
            self.sources, decision_id, incident_id=incident_id, at_ms=at_ms, alert=alert, trigger=trigger
        )
        bundle = build_bundle(inputs, self.redactor, software_version())
        path = write_bundle(bundle, self.var_dir)
        outcome = Outcome(str(path), bundle.sha256, inputs.incident_id)
        if fingerprint:
            self._ticket(fingerprint, note_for(inputs, bundle, self.redactor), outcome)
        if self.writer is not None:
            links = outcome.opened + outcome.commented
            record_bundle(self.writer, bundle, inputs, path, links, clock.wall_ms())
        return outcome

    def answer(self, asked: EvidenceRequest) -> dict[str, Any]:
        """A capture the engine's API was asked for, as its JSON answer."""
        outcome = self.capture(
            asked.decision_id,
            fingerprint=asked.fingerprint,
            incident_id=asked.incident_id,
            trigger=asked.trigger,
        )
        return outcome.as_dict()

    def _ticket(self, fingerprint: str, note: TicketNote, outcome: Outcome) -> None:
        for system in self.tickets:
            try:
                known = self.ledger.find(fingerprint, system.name) if self.ledger else None
                if known is None:
                    ticket = system.open(note)
                    if self.ledger:
                        self.ledger.keep(fingerprint, ticket)
                    outcome.opened.append(ticket.url)
                else:
                    system.comment(known, note)
                    outcome.commented.append(known.url)
            except (TicketError, httpx.HTTPError, redis.RedisError, OSError) as exc:
                outcome.errors.append(f"{system.name}: {exc}")
                log.warning("evidence ticket on %s failed: %s", system.name, exc)


def build_service(
    settings: Settings, read: RowReader, writer: ArrowWriter | None, provider_keys: Sequence[str] = ()
) -> EvidenceService:
    """The service as the settings configure it (Redis for live quotas and the ticket ledger)."""
    client = sync_redis(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    catalog = load_catalog()
    redactor = Redactor(secrets_held(settings, provider_keys), settings.evidence_redact_patterns)
    return EvidenceService(
        Sources(read, client, catalog, settings),
        writer,
        redactor,
        ticket_systems(settings),
        TicketLedger(client),
        settings.var_dir,
    )
