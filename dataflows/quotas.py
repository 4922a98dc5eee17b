"""The quotas dataflow branch: usage events into live ETAs and reconciled runtime caps.

Keyed by provider, so one worker holds a provider's whole state (recoverable: it
is plain picklable state in a Bytewax stateful step). For each usage event:

- the windows of ``symphony.quotas`` are replayed from the event (event time);
- the provider's reported limits are reconciled against the policy
  (``symphony.reconciler``), which may propose a runtime cap;
- at most once per ``PUBLISH_EVERY_MS`` of event time, or at once when a cap
  changes, a ``QuotaUpdate`` goes out: the ETAs of every window and the runtime
  cap adjustments, for Redis (``symphony:eta:*``, ``symphony:caps:*``) and for the
  ``quota_snapshots`` table in ClickHouse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bytewax.operators as op
from bytewax.dataflow import Stream

from symphony.events import Usage
from symphony.quota_eta import ProviderUsage, QuotaUpdate
from symphony.quotas import QuotaPolicy
from symphony.reconciler import Reconciler

PUBLISH_EVERY_MS = 5_000


@dataclass
class QuotaTracker:
    """One provider's quota state in the dataflow."""

    usage: ProviderUsage
    reconciler: Reconciler
    published_at: int = field(default=-PUBLISH_EVERY_MS)

    def add(self, event: Usage) -> QuotaUpdate | None:
        tokens = event.input_tokens + event.output_tokens
        # A refused or failed attempt still spent a request slot at the provider.
        self.usage.add(event.ts, 1, tokens)
        adjustments = self.reconciler.observe(event.rate_limit, event.ts)
        if not adjustments and event.ts - self.published_at < PUBLISH_EVERY_MS:
            return None
        self.published_at = event.ts
        etas = self.usage.etas(event.ts, self.reconciler.caps_in_force())
        return QuotaUpdate(event.provider, etas, adjustments)


def _track(
    policy: QuotaPolicy, tracker: QuotaTracker | None, event: Usage
) -> tuple[QuotaTracker, QuotaUpdate | None]:
    if tracker is None:
        limits = policy.provider_limits(event.provider)
        tracker = QuotaTracker(ProviderUsage(event.provider, limits), Reconciler(limits))
    return tracker, tracker.add(event)


def quota_updates(usage: Stream[Usage], policy: QuotaPolicy) -> Stream[QuotaUpdate]:
    """The branch: usage events in, quota updates out."""
    keyed = op.key_on("quota_by_provider", usage, lambda event: event.provider)
    # ("openai", Usage)
    updates = op.stateful_map("quota_state", keyed, lambda tracker, event: _track(policy, tracker, event))
    # ("openai", QuotaUpdate | None)
    published = op.filter_map("quota_published", updates, lambda item: item[1])
    # QuotaUpdate(provider, etas, adjustments)
    return published
