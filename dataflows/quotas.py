"""The quotas dataflow branch: usage events into live ETAs and reconciled runtime caps.

Keyed by provider, so one worker holds a provider's whole state (recoverable: it
is plain picklable state in a Bytewax stateful step). Items are a batch's usage
events of one provider, in stream order, so the per-item cost of the dataflow is
paid per batch and provider, not per event. For each usage event:

- the windows of ``symphony.quotas.rules`` are replayed from the event (event time);
- the provider's reported limits are reconciled against the policy
  (``symphony.quotas.reconciler``), which may propose a runtime cap;
- at most once per ``PUBLISH_EVERY_MS`` of event time, or at once when a cap
  changes, a ``QuotaUpdate`` goes out: the ETAs of every window and the runtime
  cap adjustments, for Redis (``symphony:eta:*``, ``symphony:caps:*``) and for the
  ``quota_snapshots`` table in ClickHouse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import bytewax.operators as op
from bytewax.dataflow import Stream

from symphony.events import Usage
from symphony.quotas import (
    OBSERVED_LIMIT_HEADERS,
    Adjustment,
    ProviderUsage,
    QuotaPolicy,
    QuotaUpdate,
    Reconciler,
)

PUBLISH_EVERY_MS = 5_000


@dataclass
class QuotaTracker:
    """One provider's quota state in the dataflow."""

    usage: ProviderUsage
    reconciler: Reconciler
    published_at: int = field(default=-PUBLISH_EVERY_MS)

    def add(self, events: Sequence[Usage]) -> list[QuotaUpdate]:
        """One batch of a provider's usage; an update when one is due or a cap changed."""
        # A refused or failed attempt still spent a request slot at the provider.
        self.usage.add_many((e.ts, 1, e.input_tokens + e.output_tokens) for e in events)
        updates = []
        for event in events:
            if OBSERVED_LIMIT_HEADERS.keys().isdisjoint(event.rate_limit):
                continue
            adjustments = self.reconciler.observe(event.rate_limit, event.ts)
            if adjustments:
                updates.append(self._update(event, adjustments))
        last = events[-1]
        if not updates and last.ts - self.published_at >= PUBLISH_EVERY_MS:
            updates.append(self._update(last, []))
        return updates

    def _update(self, event: Usage, adjustments: list[Adjustment]) -> QuotaUpdate:
        self.published_at = event.ts
        etas = self.usage.etas(event.ts, self.reconciler.caps_in_force())
        return QuotaUpdate(event.provider, etas, adjustments)


def _track(
    policy: QuotaPolicy, tracker: QuotaTracker | None, events: Sequence[Usage]
) -> tuple[QuotaTracker, list[QuotaUpdate]]:
    if tracker is None:
        limits = policy.provider_limits(events[0].provider)
        tracker = QuotaTracker(ProviderUsage(events[0].provider, limits), Reconciler(limits))
    return tracker, tracker.add(events)


def by_provider(events: Sequence[Usage]) -> list[tuple[str, list[Usage]]]:
    """A batch's usage events grouped by provider, each group in stream order."""
    groups: dict[str, list[Usage]] = {}
    for event in events:
        groups.setdefault(event.provider, []).append(event)
    return list(groups.items())


def quota_updates(usage: Stream[Sequence[Usage]], policy: QuotaPolicy) -> Stream[QuotaUpdate]:
    """The branch: batches of usage events in, quota updates out."""
    keyed = op.flat_map("quota_by_provider", usage, by_provider)
    # ("openai", [Usage, ...]): one batch's events of one provider
    updates = op.stateful_map("quota_state", keyed, lambda tracker, events: _track(policy, tracker, events))
    # ("openai", [QuotaUpdate, ...])
    published = op.flat_map("quota_published", updates, lambda item: item[1])
    # QuotaUpdate(provider, etas, adjustments)
    return published
