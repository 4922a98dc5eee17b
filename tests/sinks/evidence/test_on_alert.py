from sinks.evidence.on_alert import EvidenceOnAlert
from symphony.alerts import Alert
from symphony.flags import Flags


def alert(**changes: object) -> Alert:
    fields: dict[str, object] = dict(
        status="firing",
        objective="p95_latency_ms",
        provider="grok",
        model="grok-3-mini",
        value=900.0,
        threshold=400.0,
        started_ms=1000,
        at_ms=5000,
        window_ms=3000,
        attempts=40,
        trace_id="t" * 32,
        decision_id="d1",
        first=True,
    )
    fields.update(changes)
    return Alert(**fields)  # type: ignore[arg-type]


def test_only_a_firing_transition_with_an_exemplar_while_the_live_flag_is_on() -> None:
    live = {"on": True}
    on_alert = EvidenceOnAlert(service=None, enabled=lambda: live["on"])  # type: ignore[arg-type]
    assert on_alert.wants(alert())
    assert not on_alert.wants(alert(first=False))  # a refresh is no new evidence
    assert not on_alert.wants(alert(status="resolved"))
    assert not on_alert.wants(alert(decision_id=""))
    live["on"] = False
    assert not on_alert.wants(alert())


def test_the_flag_is_live_and_the_environment_is_its_default() -> None:
    defaults = Flags(learner_enabled=True, traffic_split=0.05, evidence_bundles=False)
    assert defaults.merged({b"evidence_bundles": b"on"}).evidence_bundles
    assert not Flags(True, 0.05, evidence_bundles=True).merged({b"evidence_bundles": b"off"}).evidence_bundles
    assert not defaults.merged({b"evidence_bundles": b"maybe"}).evidence_bundles  # invalid: the default holds


def test_one_incident_per_arm_and_objective_whenever_it_fires() -> None:
    first, again = alert(started_ms=1000), alert(started_ms=90_000)
    assert first.alert_id != again.alert_id and first.fingerprint == again.fingerprint
    assert alert(objective="error_rate").fingerprint != first.fingerprint
    assert alert(model="grok-3").fingerprint != first.fingerprint


def test_half_configured_tickets_are_refused_naming_the_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from pydantic import SecretStr

    from sinks.evidence.service import ticket_systems
    from symphony.settings import SettingsError, load_settings

    cases = [
        ({"evidence_github_repository": "acme/symphony"}, "EVIDENCE_GITHUB_TOKEN: not set"),
        (
            {
                "evidence_github_repository": "acme/symphony",
                "evidence_github_token_file": str(tmp_path / "no"),
            },
            "EVIDENCE_GITHUB_TOKEN_FILE=",
        ),
        (
            {"jira_project": "OPS", "jira_api_token": SecretStr("t"), "jira_url": "https://x.atlassian.net"},
            "JIRA_EMAIL: not set",
        ),
    ]
    for overrides, message in cases:
        with pytest.raises(SettingsError, match=message):
            ticket_systems(load_settings(**overrides))
    (tmp_path / "token").write_text("ghp_fromafile0123456789abcdef\n")
    settings = load_settings(
        evidence_github_repository="acme/symphony", evidence_github_token_file=str(tmp_path / "token")
    )
    [github] = ticket_systems(settings)
    assert github.name == "github" and github.token == "ghp_fromafile0123456789abcdef"  # type: ignore[attr-defined]
    assert ticket_systems(load_settings()) == []
