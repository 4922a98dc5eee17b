"""The learner dataflow branch: decisions, usage and feedback joined in event time, learned, published.

One key (``"learner"``), so one worker holds the whole learner state, which is
plain picklable state in a Bytewax stateful step and so survives a restart in
the recovery snapshots like the quotas branch. For each batch of events:

- decisions, usage and feedback are joined by ``decision_id``; a decision is
  complete when its feedback and its answering attempt's usage have come, or at
  once when no attempt answered (utility 0);
- a complete decision's utility (``learner.utility``, the champion file's weights
  for its task) updates the River estimates (``learner.bandit``) for the arm that
  served it, per task and per task in the request's context (the size of its prompt,
  ``symphony.serving.context_of``); decisions an override pinned teach nothing;
- a decision still incomplete ``FEEDBACK_TIMEOUT_MS`` of event time after its
  first event is dropped and counted as timed out; events that come after their
  decision was learned are ignored for as long;
- at most once per ``PUBLISH_EVERY_MS`` of event time, the challenger built from
  the estimates goes out for Redis (``symphony.serving.CHALLENGER_KEY``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream

from learner.bandit import ArmEstimates, challenger_json, challenger_tables, contextual_tables
from learner.utility import Outcome, utility
from symphony.catalog import Policy
from symphony.events import Decision, Feedback, Usage
from symphony.serving import PublishedChallenger, context_of

FEEDBACK_TIMEOUT_MS = 24 * 3600 * 1000
PUBLISH_EVERY_MS = 60_000
KEY = "learner"
_Entry = TypeVar("_Entry")


class Pending(NamedTuple):
    """What a decision still waiting for its outcome needs, in plain values: immutable, so a
    snapshot copies the table of them, not each one (Bytewax copies the state every epoch)."""

    first_seen: int  # the event time of its first event, whichever came first
    decided: bool = False  # its decision event has come
    task: str = ""
    arm: str = ""
    policy: str = ""
    served: bool = False
    context: str = ""
    answered: bool = False  # an attempt answered (usage with status ok)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    score: float | None = None

    def joined(self, event: Decision | Usage | Feedback) -> Pending:
        if isinstance(event, Decision):
            return self._replace(
                decided=True,
                task=event.task,
                arm=f"{event.provider}/{event.model}",
                policy=event.policy,
                served=bool(event.served_by),
                context=context_of(event.features),
            )
        if isinstance(event, Usage):
            return self._replace(
                answered=self.answered or event.status == "ok",
                cost_usd=self.cost_usd + event.cost_usd,
                latency_ms=self.latency_ms + event.latency_ms,
            )
        return self._replace(score=event.score)

    def outcome(self) -> Outcome | None:
        """The decision's outcome once everything it needs has come."""
        if not self.decided:
            return None
        if not self.served:
            return Outcome(served=False, score=None, cost_usd=0.0, latency_ms=0.0)
        if self.score is None or not self.answered:
            return None
        return Outcome(served=True, score=self.score, cost_usd=self.cost_usd, latency_ms=self.latency_ms)


@dataclass
class LearnerState:
    estimates: ArmEstimates = field(default_factory=ArmEstimates)
    # The same per request context (``symphony.serving.context_of`` the decision's features).
    by_context: dict[str, ArmEstimates] = field(default_factory=dict)
    # Both in the order decisions were first seen, which is about event time: timing out stops early.
    pending: dict[str, Pending] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)  # completed decisions: late events are ignored
    learned: int = 0
    timed_out: int = 0
    watermark: int = 0  # the latest event time seen
    published_at: int = -PUBLISH_EVERY_MS

    def add(self, events: Sequence[Decision | Usage | Feedback], policy: Policy) -> list[PublishedChallenger]:
        for event in events:
            self._join(event)
            self.watermark = max(self.watermark, event.ts)
            self._learn_if_complete(event.decision_id, policy)
        self._time_out()
        if self.learned and self.watermark - self.published_at >= PUBLISH_EVERY_MS:
            self.published_at = self.watermark
            version = f"learned-{self.watermark}"
            contexts = contextual_tables(self.by_context)
            payload = challenger_json(version, challenger_tables(self.estimates), contexts=contexts)
            return [PublishedChallenger(version, payload)]
        return []

    def __deepcopy__(self, memo: dict[int, object]) -> LearnerState:
        """Bytewax's snapshot: the tables copied as tables (their entries are immutable), the River
        estimates (small: tasks x arms x contexts) deeply."""
        return LearnerState(
            estimates=copy.deepcopy(self.estimates, memo),
            by_context=copy.deepcopy(self.by_context, memo),
            pending=dict(self.pending),
            done=dict(self.done),
            learned=self.learned,
            timed_out=self.timed_out,
            watermark=self.watermark,
            published_at=self.published_at,
        )

    def _join(self, event: Decision | Usage | Feedback) -> None:
        if event.decision_id in self.done:
            return
        pending = self.pending.get(event.decision_id) or Pending(event.ts)
        self.pending[event.decision_id] = pending.joined(event)

    def _learn_if_complete(self, decision_id: str, policy: Policy) -> None:
        pending = self.pending.get(decision_id)
        outcome = pending.outcome() if pending is not None else None
        if pending is None or outcome is None:
            return
        del self.pending[decision_id]
        self.done[decision_id] = pending.first_seen
        if pending.policy == "override":
            return
        value = utility(policy.utility_weights(pending.task), outcome)
        if value is not None:
            self.estimates.learn(pending.task, pending.arm, value)
            self.by_context.setdefault(pending.context, ArmEstimates()).learn(
                pending.task, pending.arm, value
            )
            self.learned += 1

    def _time_out(self) -> None:
        """Drop what waited past the timeout: from the oldest, stopping at the first still in time (an
        entry first seen out of order is dropped a little late, never early)."""
        self.timed_out += _drop_older(self.pending, lambda p: p.first_seen, self.watermark)
        _drop_older(self.done, lambda seen: seen, self.watermark)


def _drop_older(table: dict[str, _Entry], first_seen: Callable[[_Entry], int], watermark: int) -> int:
    expired = []
    for key, entry in table.items():
        if watermark - first_seen(entry) <= FEEDBACK_TIMEOUT_MS:
            break
        expired.append(key)
    for key in expired:
        del table[key]
    return len(expired)


def _learn(
    policy: Policy, state: LearnerState | None, events: Sequence[Decision | Usage | Feedback]
) -> tuple[LearnerState, list[PublishedChallenger]]:
    state = state or LearnerState()
    return state, state.add(events, policy)


def learner_updates(
    events: Stream[Sequence[Decision | Usage | Feedback]], policy: Policy
) -> Stream[PublishedChallenger]:
    """The branch: batches of valid events in, challengers to publish out."""
    keyed = op.key_on("learner_key", events, lambda _: KEY)
    # ("learner", [Decision | Usage | Feedback, ...])
    updates = op.stateful_map("learner_state", keyed, lambda state, batch: _learn(policy, state, batch))
    # ("learner", [PublishedChallenger, ...])
    return op.flat_map("learner_published", updates, lambda item: item[1])
    # PublishedChallenger(version, payload)
