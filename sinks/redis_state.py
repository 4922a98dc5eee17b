"""Live quota state into Redis: ETAs for the quotas matrix and runtime caps for the proxy.

``symphony:eta:{<provider>}:<metric>:<window>`` is a hash of the window's ``Eta``
(used, remaining, cap, reset_in_ms, exhaust_in_ms, burn_per_min, as_of_ms).
``symphony:caps:{<provider>}:<metric>:<window>`` holds a runtime cap with a TTL;
the proxy's reserve script uses it in place of the policy cap while it lives.
Every write is an overwrite, so replays after a recovery are harmless.
"""

from __future__ import annotations

import logging

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from typing_extensions import override

from symphony import keys
from symphony.flags import Flags
from symphony.keys import CHALLENGER_KEY, FLAGS_KEY
from symphony.quotas import RUNTIME_CAP_TTL_MS, Adjustment, Eta, QuotaUpdate
from symphony.redis_client import sync_redis
from symphony.serving import PublishedChallenger

log = logging.getLogger("symphony.reconciler")

ETA_TTL_MS = 7 * 24 * 60 * 60 * 1000


def eta_key(eta: Eta) -> str:
    return keys.eta_key(eta.provider, eta.metric, eta.window)


def apply_adjustment(client: redis.Redis, adjustment: Adjustment) -> None:
    """Note a new difference in the log, then set the runtime cap (a TTL refresh says nothing)."""
    limit = adjustment.limit
    where = f"provider={limit.provider} window={limit.window.name} metric={limit.metric}"
    if adjustment.noted:
        log.warning(
            "policy_vs_observed=diff %s policy=%d observed=%d", where, adjustment.policy, adjustment.observed
        )
    if not adjustment.applies:
        return
    client.set(limit.runtime_cap_key, adjustment.target, px=RUNTIME_CAP_TTL_MS)
    if adjustment.changes_cap:
        log.warning(
            "runtime_cap_adjustment %s from=%d to=%d ttl_s=%d",
            where,
            adjustment.previous,
            adjustment.target,
            RUNTIME_CAP_TTL_MS // 1000,
        )


def write_updates(client: redis.Redis, updates: list[QuotaUpdate]) -> None:
    for update in updates:
        for adjustment in update.adjustments:
            apply_adjustment(client, adjustment)
    pipe = client.pipeline(transaction=False)
    for update in updates:
        for eta in update.etas:
            pipe.hset(eta_key(eta), mapping=eta.as_fields())  # type: ignore[arg-type]
            pipe.pexpire(eta_key(eta), ETA_TTL_MS)
    pipe.execute()


class _QuotaStatePartition(StatelessSinkPartition[QuotaUpdate]):
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    @override
    def write_batch(self, items: list[QuotaUpdate]) -> None:
        write_updates(self._client, items)

    @override
    def close(self) -> None:
        self._client.close()


class QuotaStateSink(DynamicSink[QuotaUpdate]):
    def __init__(self, redis_url: str) -> None:
        self._redis_url = redis_url

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _QuotaStatePartition:
        return _QuotaStatePartition(sync_redis(self._redis_url))


class _ChallengerPartition(StatelessSinkPartition[PublishedChallenger]):
    def __init__(self, client: redis.Redis, defaults: Flags) -> None:
        self._client = client
        self._defaults = defaults

    @override
    def write_batch(self, items: list[PublishedChallenger]) -> None:
        latest = items[-1]  # each replaces the one before
        flags = self._defaults.merged(self._client.hgetall(FLAGS_KEY))
        if not flags.publishes:
            why = "learner disabled" if not flags.learner_enabled else "challenger frozen"
            log.info("%s (live flag): challenger %s not published", why, latest.version)
            return
        self._client.set(CHALLENGER_KEY, latest.payload)
        log.info("published challenger %s", latest.version)

    @override
    def close(self) -> None:
        self._client.close()


class ChallengerSink(DynamicSink[PublishedChallenger]):
    """The learner's challenger into Redis, where every proxy replica reads it, unless the live
    flags (``symphony.flags``, over ``defaults``) say the learner is off or the challenger frozen."""

    def __init__(self, redis_url: str, defaults: Flags) -> None:
        self._redis_url = redis_url
        self._defaults = defaults

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ChallengerPartition:
        return _ChallengerPartition(sync_redis(self._redis_url), self._defaults)
