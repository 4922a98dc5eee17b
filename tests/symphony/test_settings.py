from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from symphony.settings import SettingsError, load_settings
from tests.stackutil import processes_of, stack_env


def test_defaults_point_at_embedded_chdb_under_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
    settings = load_settings()
    assert settings.resolved_clickhouse_url == f"chdb://{tmp_path.resolve()}/chdb"
    assert settings.traffic_split == 0.05  # the release pack's pre-flight defaults
    assert settings.learner_enabled is True


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TRAFFIC_SPLIT", "1.5", "a number from 0 to 1"),
        ("TRAFFIC_SPLIT", "half", "a number from 0 to 1"),
        ("LEARNER_ENABLED", "maybe", "true or false"),
        ("REDIS_URL", "localhost:6379", "redis://"),
        ("CLICKHOUSE_URL", "clickhouse.internal", "chdb:///"),
        ("PROXY_PORT", "70000", "port number"),
        ("MAX_HEADER_BYTES", "12", "bytes from 1024"),
    ],
)
def test_bad_value_names_the_variable_and_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert f"invalid setting {name}=" in message
    assert expected in message


def test_two_parts_on_one_port_is_refused_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_PORT", "9100")
    monkeypatch.setenv("SCHEDULER_PORT", "9100")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "PROXY_PORT and SCHEDULER_PORT are both 9100" in str(raised.value)
    assert "each need a port of their own" in str(raised.value)
    monkeypatch.setenv("SCHEDULER_PORT", "9101")
    monkeypatch.setenv("SIM_PORT", "9100")
    with pytest.raises(SettingsError, match="PROXY_PORT and SIM_PORT are both 9100"):
        load_settings()
    # With SIM_URL the simulator runs elsewhere: SIM_PORT is unused, so it holds no port.
    monkeypatch.setenv("SIM_URL", "http://sim.internal:8701")
    assert load_settings().proxy_port == load_settings().sim_port == 9100


def test_flags_accept_the_usual_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARNER_ENABLED", "yes")
    assert load_settings().learner_enabled is True
    monkeypatch.setenv("LEARNER_ENABLED", "0")
    assert load_settings().learner_enabled is False


def test_invalid_setting_stops_up_before_any_process_starts(tmp_path: Path) -> None:
    stack = stack_env(tmp_path, TRAFFIC_SPLIT="lots")
    result = subprocess.run(
        [sys.executable, "-m", "cli", "up"], env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "TRAFFIC_SPLIT" in result.stderr
    assert "a number from 0 to 1" in result.stderr
    assert processes_of(stack.var_dir) == []
    assert not (stack.var_dir / "logs").exists()


def test_an_empty_alert_destination_is_no_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    from sinks.alerts import alert_destinations

    monkeypatch.setenv("SLACK_WEBHOOK_URL", "")
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "")
    settings = load_settings()
    assert settings.slack_webhook_url is None and settings.pagerduty_routing_key is None
    assert alert_destinations(settings) == []
