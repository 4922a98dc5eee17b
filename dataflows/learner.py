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

from collections.abc import Sequence
from dataclasses import dataclass, field

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


@dataclass
class Pending:
    first_seen: int  # the event time of its first event, whichever came first
    decision: Decision | None = None
    usage: list[Usage] = field(default_factory=list)
    score: float | None = None

    def outcome(self) -> Outcome | None:
        """The decision's outcome once everything it needs has come."""
        if self.decision is None:
            return None
        if not self.decision.served_by:
            return Outcome(served=False, score=None, cost_usd=0.0, latency_ms=0.0)
        answered = any(u.status == "ok" for u in self.usage)
        if self.score is None or not answered:
            return None
        cost = sum(u.cost_usd for u in self.usage)
        latency = sum(u.latency_ms for u in self.usage)
        return Outcome(served=True, score=self.score, cost_usd=cost, latency_ms=latency)


@dataclass
class LearnerState:
    estimates: ArmEstimates = field(default_factory=ArmEstimates)
    # The same per request context (``symphony.serving.context_of`` the decision's features).
    by_context: dict[str, ArmEstimates] = field(default_factory=dict)
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

    def _join(self, event: Decision | Usage | Feedback) -> None:
        if event.decision_id in self.done:
            return
        pending = self.pending.setdefault(event.decision_id, Pending(event.ts))
        if isinstance(event, Decision):
            pending.decision = event
        elif isinstance(event, Usage):
            pending.usage.append(event)
        else:
            pending.score = event.score

    def _learn_if_complete(self, decision_id: str, policy: Policy) -> None:
        pending = self.pending.get(decision_id)
        outcome = pending.outcome() if pending is not None else None
        if pending is None or outcome is None or pending.decision is None:
            return
        del self.pending[decision_id]
        self.done[decision_id] = pending.first_seen
        decision = pending.decision
        if decision.policy == "override":
            return
        value = utility(policy.utility_weights(decision.task), outcome)
        if value is not None:
            arm = f"{decision.provider}/{decision.model}"
            self.estimates.learn(decision.task, arm, value)
            context = context_of(decision.features)
            self.by_context.setdefault(context, ArmEstimates()).learn(decision.task, arm, value)
            self.learned += 1

    def __setstate__(self, state: dict[str, object]) -> None:
        """A snapshot from before contexts were learned restores with none learned yet."""
        self.__dict__.update({"by_context": {}, **state})

    def _time_out(self) -> None:
        expired = [d for d, p in self.pending.items() if self.watermark - p.first_seen > FEEDBACK_TIMEOUT_MS]
        for decision_id in expired:
            del self.pending[decision_id]
        self.timed_out += len(expired)
        forgotten = [d for d, seen in self.done.items() if self.watermark - seen > FEEDBACK_TIMEOUT_MS]
        for decision_id in forgotten:
            del self.done[decision_id]


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
