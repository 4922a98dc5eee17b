"""The proxies' circuit breakers as the control plane sees them: published per replica, read together.

Each proxy process (a replica) holds a breaker per provider in its memory (``proxy.routing.health``):
``closed`` (serving), ``open`` (ejected: no attempt until its cooldown ends) or ``half-open`` (the
cooldown ended: one trial attempt decides). Every ``INTERVAL_S`` it writes them to Redis
(``proxy.breaker_states``): the hash ``symphony:breakers:<replica>`` (provider -> ``encode``d state),
which expires after ``TTL_S`` unless written again, and the replica's name, scored with the wall time,
in the sorted set ``symphony:breakers``. ``read`` gathers the replicas heard from within ``TTL_S`` and
``aggregate`` sums them per provider: how many replicas have it closed, open and half-open, and the
state to show: ``open`` when any replica has it open, else ``half-open`` when any is half-open, else
``closed``; ``unknown`` when no live replica reports it.

>>> shown = aggregate([{"grok": encode("open", "grok is ejected")},
...                     {"grok": encode("closed"), "openai": encode("closed")}], ["grok", "openai", "venice"])
>>> shown["grok"]
{'state': 'open', 'replicas': 2, 'closed': 1, 'open': 1, 'half-open': 0, 'reasons': ['grok is ejected']}
>>> shown["openai"]["state"], shown["venice"]["state"]
('closed', 'unknown')
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import redis

from symphony import clock
from symphony.keys import BREAKER_REPLICAS, breakers_key

BreakerState = Literal["closed", "open", "half-open"]
STATES: tuple[BreakerState, ...] = ("closed", "open", "half-open")
INTERVAL_S = 1.0  # how often each replica publishes
TTL_S = 5.0  # a replica not heard from for this long no longer counts
MAX_REASONS = 3


def encode(state: BreakerState, reason: str = "") -> str:
    return json.dumps({"state": state, "reason": reason})


def read(client: redis.Redis) -> list[dict[str, str]]:
    """Every live replica's breakers: provider -> encoded state, one mapping per replica."""
    alive_since = clock.wall_ms() - int(TTL_S * 1000)
    replicas = [r.decode() for r in client.zrangebyscore(BREAKER_REPLICAS, alive_since, "+inf")]  # type: ignore[union-attr]
    if not replicas:
        return []
    pipe = client.pipeline(transaction=False)
    for replica in replicas:
        pipe.hgetall(breakers_key(replica))
    found: list[dict[bytes, bytes]] = pipe.execute()
    return [{k.decode(): v.decode() for k, v in states.items()} for states in found if states]


def aggregate(replicas: Sequence[Mapping[str, str]], providers: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per provider: the state to show, the live replicas that report it, how many in each state, why."""
    result: dict[str, dict[str, Any]] = {}
    for provider in providers:
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        reasons: list[str] = []
        for states in replicas:
            raw = states.get(provider)
            if raw is None:
                continue
            try:
                decoded = json.loads(raw)
                state = decoded["state"]
            except (ValueError, KeyError, TypeError):
                continue
            if state not in counts:
                continue
            counts[state] += 1
            reason = str(decoded.get("reason") or "")
            if reason and state != "closed" and len(reasons) < MAX_REASONS:
                reasons.append(reason)
        total = sum(counts.values())
        shown = (
            "unknown"
            if total == 0
            else "open"
            if counts["open"]
            else "half-open"
            if counts["half-open"]
            else "closed"
        )
        result[provider] = {"state": shown, "replicas": total, **counts, "reasons": reasons}
    return result
