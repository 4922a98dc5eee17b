"""The SLO dataflow branch: p95 latency and error rate per arm over sliding event-time windows, into alerts.

One key (``"slo"``), so one worker holds the state, which survives a restart in the
recovery snapshots: per arm (provider/model, the route a request took) the
attempts of the last window of event time, and the trace id of each recent
decision, so an alert can name a request that breached. Every ``step_ms`` of
event time each arm is judged over the window that ends at the latest event
(``symphony.alerts``):

- **p95 latency** of its answered attempts, when at least ``min_attempts`` answered;
- **error rate**: attempts that ended in a 5xx, a timeout or an error, over all
  its attempts but the cancelled (a 429 is the provider's quota at work, not a
  failure of the service), when it had at least ``min_attempts``.

An arm over a threshold fires an alert, re-sent at every step while it stays over
or while its window holds too few attempts to say; the alert resolves when the arm
is back within the threshold or has had no attempt for a whole window. The
exemplar is the slowest answered attempt (latency) or the latest failure (errors)
whose decision's trace id is known.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Stream

from symphony.alerts import Alert, Objective, SloThresholds
from symphony.events import Decision, Feedback, Usage
from symphony.settings import Settings

KEY = "slo"
FAILED = frozenset({"5xx", "timeout", "error"})
OBJECTIVES: tuple[Objective, ...] = ("p95_latency_ms", "error_rate")


class Attempt(NamedTuple):
    ts: int
    latency_ms: float
    answered: bool
    failed: bool
    decision_id: str


class Judgement(NamedTuple):
    value: float
    attempts: int
    enough: bool
    exemplar: str  # decision id


@dataclass
class SloState:
    attempts: dict[str, deque[Attempt]] = field(default_factory=dict)  # by arm, about in event time
    traces: dict[str, tuple[int, str]] = field(default_factory=dict)  # decision id -> (ts, trace id)
    open: dict[tuple[str, Objective], Alert] = field(default_factory=dict)
    watermark: int = 0
    judged_at: int | None = None

    def add(self, events: Sequence[Decision | Usage | Feedback], slo: SloThresholds) -> list[Alert]:
        for event in events:
            self._record(event)
            self.watermark = max(self.watermark, event.ts)
        if self.judged_at is not None and self.watermark - self.judged_at < slo.step_ms:
            return []
        self.judged_at = self.watermark
        self._forget_before(self.watermark - slo.window_ms, slo.window_ms)
        return [alert for arm in sorted(self.attempts) for alert in self._judge(arm, slo)]

    def __deepcopy__(self, memo: dict[int, object]) -> SloState:
        """Bytewax's snapshot: the attempts and traces are immutable tuples, so their containers are
        copied, not each one."""
        return SloState(
            attempts={arm: deque(attempts) for arm, attempts in self.attempts.items()},
            traces=dict(self.traces),
            open=dict(self.open),
            watermark=self.watermark,
            judged_at=self.judged_at,
        )

    def _record(self, event: Decision | Usage | Feedback) -> None:
        if isinstance(event, Decision) and event.trace_id:
            self.traces[event.decision_id] = (event.ts, event.trace_id)
        elif isinstance(event, Usage) and event.status != "cancelled":
            attempt = Attempt(
                event.ts, event.latency_ms, event.status == "ok", event.status in FAILED, event.decision_id
            )
            self.attempts.setdefault(f"{event.provider}/{event.model}", deque()).append(attempt)

    def _forget_before(self, start: int, window_ms: int) -> None:
        for attempts in self.attempts.values():
            while attempts and attempts[0].ts < start:
                attempts.popleft()
        # Traces are kept a window longer: an attempt's decision event may come after it.
        stale = []
        for decision_id, (ts, _) in self.traces.items():
            if ts >= start - window_ms:
                break
            stale.append(decision_id)
        for decision_id in stale:
            del self.traces[decision_id]

    def _judge(self, arm: str, slo: SloThresholds) -> list[Alert]:
        attempts = self.attempts[arm]
        alerts = []
        for objective in OBJECTIVES:
            judged = (
                self._latency(attempts, slo) if objective == "p95_latency_ms" else self._errors(attempts, slo)
            )
            alert = self._transition(arm, objective, judged, slo)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _latency(self, attempts: deque[Attempt], slo: SloThresholds) -> Judgement:
        answered = [a for a in attempts if a.answered]
        if not answered:
            return Judgement(0.0, 0, False, "")
        p95 = float(np.percentile([a.latency_ms for a in answered], 95))
        known = [a for a in answered if a.decision_id in self.traces]
        slowest = max(known, key=lambda a: a.latency_ms).decision_id if known else ""
        return Judgement(p95, len(answered), len(answered) >= slo.min_attempts, slowest)

    def _errors(self, attempts: deque[Attempt], slo: SloThresholds) -> Judgement:
        if not attempts:
            return Judgement(0.0, 0, False, "")
        failed = [a for a in attempts if a.failed]
        known = [a for a in failed if a.decision_id in self.traces]
        latest = known[-1].decision_id if known else ""
        return Judgement(
            len(failed) / len(attempts), len(attempts), len(attempts) >= slo.min_attempts, latest
        )

    def _transition(
        self, arm: str, objective: Objective, judged: Judgement, slo: SloThresholds
    ) -> Alert | None:
        opened = self.open.get((arm, objective))
        if judged.enough and judged.value > threshold_of(objective, slo):
            alert = self._firing(arm, objective, judged.value, judged, opened, judged.exemplar, slo)
        elif opened is not None and judged.attempts and not judged.enough:  # too few to say: held open
            alert = self._firing(arm, objective, opened.value, judged, opened, opened.decision_id, slo)
        elif opened is not None:
            del self.open[(arm, objective)]
            return replace(
                opened,
                status="resolved",
                value=judged.value,
                at_ms=self.watermark,
                attempts=judged.attempts,
                first=False,
            )
        else:
            return None
        self.open[(arm, objective)] = alert
        return alert

    def _firing(
        self,
        arm: str,
        objective: Objective,
        value: float,
        judged: Judgement,
        opened: Alert | None,
        exemplar: str,
        slo: SloThresholds,
    ) -> Alert:
        known = self.traces.get(exemplar)
        if known is not None:
            decision_id, trace_id = exemplar, known[1]
        elif opened is not None:  # the exemplar it opened with, whose decision may be forgotten by now
            decision_id, trace_id = opened.decision_id, opened.trace_id
        else:
            decision_id, trace_id = "", ""
        provider, model = arm.split("/", 1)
        return Alert(
            status="firing",
            objective=objective,
            provider=provider,
            model=model,
            value=value,
            threshold=threshold_of(objective, slo),
            started_ms=self.watermark if opened is None else opened.started_ms,
            at_ms=self.watermark,
            window_ms=slo.window_ms,
            attempts=judged.attempts,
            trace_id=trace_id,
            decision_id=decision_id,
            first=opened is None,
        )


def slo_thresholds(settings: Settings) -> SloThresholds:
    return SloThresholds(
        p95_latency_ms=settings.slo_p95_ms,
        error_rate=settings.slo_error_rate,
        window_ms=round(settings.slo_window_s * 1000),
        step_ms=round(settings.slo_step_s * 1000),
        min_attempts=settings.slo_min_attempts,
    )


def threshold_of(objective: Objective, slo: SloThresholds) -> float:
    return slo.p95_latency_ms if objective == "p95_latency_ms" else slo.error_rate


def _judge(
    slo: SloThresholds, state: SloState | None, events: Sequence[Decision | Usage | Feedback]
) -> tuple[SloState, list[Alert]]:
    state = state or SloState()
    return state, state.add(events, slo)


def slo_alerts(events: Stream[Sequence[Decision | Usage | Feedback]], slo: SloThresholds) -> Stream[Alert]:
    """The branch: batches of valid events in, alerts (firing, refreshed, resolved) out."""
    keyed = op.key_on("slo_key", events, lambda _: KEY)
    # ("slo", [Decision | Usage | Feedback, ...])
    judged = op.stateful_map("slo_state", keyed, lambda state, batch: _judge(slo, state, batch))
    # ("slo", [Alert, ...])
    return op.flat_map("slo_alerts", judged, lambda item: item[1])
    # Alert(status, objective, provider, model, value, threshold, ...)
