"""The SLO branch's judgement: windows, thresholds, exemplars and the alert life cycle.

Expected values are worked out by hand from the attempts each test writes (chosen so the
p95 and the error rate are plain numbers), not from the code under test.
"""

from __future__ import annotations

import copy

from dataflows.slo import SloState
from symphony.alerts import Alert, SloThresholds
from symphony.events import Decision, Feedback, Usage
from tests.logged_requests import logged_request

SLO = SloThresholds(p95_latency_ms=5000.0, error_rate=0.1, window_ms=60_000, step_ms=10_000, min_attempts=20)
ARM = "grok/grok-3-mini"
OTHER = "openai/gpt-4o"


def attempt(
    ts: int, latency_ms: float, *, status: str = "ok", arm: str = ARM, trace: str | None = None
) -> list[Decision | Usage | Feedback]:
    """One request's decision (with ``trace`` as its trace id) and its one attempt, no feedback."""
    decision, usage = logged_request(ts, arm, [arm, OTHER], None, latency_ms=latency_ms)
    assert isinstance(decision, Decision) and isinstance(usage, Usage)
    trace_id = trace or f"{ts:032x}"
    return [decision.model_copy(update={"trace_id": trace_id}), usage.model_copy(update={"status": status})]


def batch(*requests: list[Decision | Usage | Feedback]) -> list[Decision | Usage | Feedback]:
    return [event for request in requests for event in request]


def firing(alerts: list[Alert], objective: str) -> Alert:
    [alert] = [a for a in alerts if a.objective == objective]
    return alert


def test_a_slow_arm_fires_with_its_slowest_request_then_refreshes_then_resolves() -> None:
    state = SloState()
    # 36 at 100 ms and 4 at 9,000 ms: the 95th percentile of 40 values lies among the four slow ones.
    slow = [
        attempt(1000 + i, 9000.0 if i % 10 == 9 else 100.0, trace="ab" * 16 if i == 19 else None)
        for i in range(40)
    ]
    slow[19] = attempt(1019, 9500.0, trace="ab" * 16)  # the slowest
    alerts = state.add(batch(*slow), SLO)
    alert = firing(alerts, "p95_latency_ms")
    assert (alert.status, alert.first, alert.provider, alert.model) == ("firing", True, "grok", "grok-3-mini")
    assert alert.value == 9000.0 and alert.threshold == 5000.0 and alert.attempts == 40
    assert alert.trace_id == "ab" * 16 and alert.started_ms == alert.at_ms == slow[-1][1].ts
    assert [a.objective for a in alerts] == ["p95_latency_ms"]  # no failure: the error rate holds

    # Within the step: nothing judged. A step later, still slow: refreshed, same start, not first.
    assert state.add(batch(attempt(5000, 100.0)), SLO) == []
    refreshed = firing(state.add(batch(attempt(12_000, 100.0)), SLO), "p95_latency_ms")
    assert refreshed.status == "firing" and not refreshed.first and refreshed.started_ms == alert.started_ms
    assert refreshed.trace_id == "ab" * 16

    # A minute after the last, every earlier attempt has left the window: 30 fast ones, p95 100 ms, resolved.
    fast = [attempt(80_000 + i, 100.0) for i in range(30)]
    resolved = firing(state.add(batch(*fast), SLO), "p95_latency_ms")
    assert resolved.status == "resolved" and resolved.value == 100.0 and resolved.attempts == 30
    assert resolved.alert_id == alert.alert_id and resolved.trace_id == "ab" * 16
    assert state.add(batch(attempt(90_000, 100.0)), SLO) == []  # closed: nothing more


def test_errors_count_5xx_timeouts_and_errors_but_not_429_and_cancelled_is_no_attempt() -> None:
    state = SloState()
    statuses = ["5xx", "timeout", "error"] + ["429"] * 5 + ["ok"] * 12 + ["cancelled"] * 10
    requests = [attempt(1000 + i, 100.0, status=s) for i, s in enumerate(statuses)]
    alert = firing(state.add(batch(*requests), SLO), "error_rate")
    # 3 failures over 20 attempts (the 10 cancelled are not attempts of the provider's).
    assert alert.value == 3 / 20 and alert.attempts == 20
    assert alert.trace_id == f"{1000 + 2:032x}"  # the latest failure


def test_too_few_attempts_say_nothing_and_hold_an_open_alert() -> None:
    state = SloState()
    assert state.add(batch(*[attempt(1000 + i, 9000.0) for i in range(19)]), SLO) == []  # 19 < 20
    opened = firing(state.add(batch(*[attempt(12_000 + i, 9000.0) for i in range(5)]), SLO), "p95_latency_ms")
    # Over a minute later only 3 attempts in the window: too few to resolve, held open as it was.
    held = firing(state.add(batch(*[attempt(80_000 + i, 100.0) for i in range(3)]), SLO), "p95_latency_ms")
    assert held.status == "firing" and held.value == opened.value and held.started_ms == opened.started_ms
    assert held.attempts == 3
    # Another arm's traffic moves event time on: a whole window without an attempt of ARM resolves it.
    later = state.add(batch(*[attempt(140_000 + i, 100.0, arm=OTHER) for i in range(20)]), SLO)
    assert firing(later, "p95_latency_ms").status == "resolved"


def test_an_exemplar_without_a_known_trace_is_not_invented() -> None:
    state = SloState()
    requests = [attempt(1000 + i, 9000.0) for i in range(20)]
    usage_only = [event for request in requests for event in request if isinstance(event, Usage)]
    alert = firing(state.add(usage_only, SLO), "p95_latency_ms")
    assert alert.trace_id == "" and alert.decision_id == ""


def test_a_snapshot_is_not_changed_by_later_events() -> None:
    state = SloState()
    state.add(batch(*[attempt(1000 + i, 9000.0) for i in range(20)]), SLO)
    snapshot = copy.deepcopy(state)
    state.add(batch(*[attempt(20_000 + i, 100.0) for i in range(20)]), SLO)
    assert len(snapshot.attempts[ARM]) == 20 and len(state.attempts[ARM]) == 40
    assert snapshot.open.keys() == state.open.keys() and snapshot.watermark < state.watermark
