"""SLO alerts: what the SLO dataflow raises and every alert destination receives.

An alert is about one arm (provider and model: the route a request took) and one
objective, the p95 latency of its answered attempts or its error rate, over a
sliding window of event time. It *fires* when the arm is over the threshold,
is *refreshed* while it stays over (Alertmanager forgets an alert nobody
re-sends), and *resolves* when the arm is back within it or has had no attempt
for a whole window. ``trace_id`` names an exemplar: a request that breached.

>>> alert = Alert("firing", "p95_latency_ms", "grok", "grok-3-mini", 6100.0, 5000.0, 1000, 61000,
...               60000, 40, "4bf92f3577b34da6a3ce929d0e0e4736", "01J-x", first=True)
>>> alert.name, alert.alert_id
('SymphonyLatencyP95', 'SymphonyLatencyP95:grok/grok-3-mini:1000')
>>> alert.summary
'grok/grok-3-mini: p95 latency 6100 ms over 5000 ms (40 attempts in 60 s)'
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Literal

AlertStatus = Literal["firing", "resolved"]
Objective = Literal["p95_latency_ms", "error_rate"]
ALERT_NAMES: dict[Objective, str] = {
    "p95_latency_ms": "SymphonyLatencyP95",
    "error_rate": "SymphonyErrorRate",
}


@dataclass(frozen=True)
class SloThresholds:
    """The objectives per arm, from the settings ``SLO_*``."""

    p95_latency_ms: float
    error_rate: float
    window_ms: int
    step_ms: int  # how often, in event time, each arm is judged
    min_attempts: int  # fewer attempts in a window say nothing either way


@dataclass(frozen=True)
class Alert:
    status: AlertStatus
    objective: Objective
    provider: str
    model: str
    value: float  # the window's p95 latency (ms) or error rate (0 to 1)
    threshold: float
    started_ms: int  # event time it first fired
    at_ms: int  # event time of this evaluation
    window_ms: int
    attempts: int  # in the window
    trace_id: str  # an exemplar request that breached ("" when none is known)
    decision_id: str
    first: bool = False  # the firing that opened it (a refresh is not)

    @property
    def name(self) -> str:
        return ALERT_NAMES[self.objective]

    @property
    def alert_id(self) -> str:
        """One alert from its first firing to its resolution."""
        return f"{self.name}:{self.provider}/{self.model}:{self.started_ms}"

    @property
    def fingerprint(self) -> str:
        """The incident an alert is part of: the same arm and objective, whenever it fires.

        Alertmanager's fingerprint is a hash of the label set, which leaves out the start time;
        so is this one, so an arm that fires again after resolving adds to its incident's ticket.
        """
        labels = f"{self.name}\n{self.provider}\n{self.model}\n{self.objective}"
        return hashlib.sha256(labels.encode()).hexdigest()[:16]

    @property
    def transition(self) -> bool:
        """Fired or resolved: what is kept in ClickHouse and sent to Slack and PagerDuty."""
        return self.first or self.status == "resolved"

    @property
    def summary(self) -> str:
        arm = f"{self.provider}/{self.model}"
        seconds = f"{self.attempts} attempts in {self.window_ms / 1000:g} s"
        against = "over" if self.status == "firing" else "back within"
        if self.objective == "p95_latency_ms":
            return f"{arm}: p95 latency {self.value:.0f} ms {against} {self.threshold:.0f} ms ({seconds})"
        return f"{arm}: error rate {self.value:.1%} {against} {self.threshold:.1%} ({seconds})"

    def as_dict(self) -> dict[str, object]:
        named = {"alert_id": self.alert_id, "name": self.name, "fingerprint": self.fingerprint}
        return {**asdict(self), **named, "summary": self.summary}

    def trace_url(self, template: str) -> str:
        """``template`` with ``{trace_id}`` filled in; "" without an exemplar."""
        return template.replace("{trace_id}", self.trace_id) if self.trace_id else ""
