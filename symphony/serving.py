"""Routing policies: a serving distribution over the candidate arms of one request.

``RoutingPolicy.distribution()`` applies the rules every policy shares: only the
candidates get probability, scores are normalised, a policy whose scores say
nothing (all zero) serves uniformly, and ``exploration`` is spread evenly over the
candidates so each keeps a non-zero probability. A policy fills in ``_scores()``.

>>> from symphony.catalog import Policy
>>> champion = ChampionPolicy(Policy(name="c", version="1", temperature=0.1, exploration=0.0,
...                                  tasks={"default": {"a/x": 0.7, "b/y": 0.6}}))
>>> [round(p, 3) for p in champion.distribution("chat", ("a/x", "b/y"))]
[0.731, 0.269]
>>> ChallengerPolicy.uniform().distribution("chat", ("a/x", "b/y", "c/z"))
(0.3333333333333333, 0.3333333333333333, 0.3333333333333333)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from symphony.catalog import Policy
from symphony.events import PolicyKind

UNIFORM_VERSION = "uniform"
# Distinct (task, candidate set) pairs are few; the cache is a bound, not a tuning knob.
_CACHE_SIZE = 4096


class RoutingPolicy(ABC):
    kind: PolicyKind

    def __init__(self, version: str, exploration: float) -> None:
        self.version = version
        self.exploration = exploration
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, ...]] = {}

    def distribution(self, task: str, candidates: tuple[str, ...]) -> tuple[float, ...]:
        """Serving probability of each candidate (same order); sums to 1."""
        key = (task, candidates)
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            cached = self._cache[key] = self._distribution(task, candidates)
        return cached

    def _distribution(self, task: str, candidates: tuple[str, ...]) -> tuple[float, ...]:
        n = len(candidates)
        scores = self._scores(task, candidates)
        total = sum(scores)
        if not (total > 0 and math.isfinite(total)):
            return tuple(1.0 / n for _ in candidates)
        share = self.exploration / n
        return tuple((1.0 - self.exploration) * score / total + share for score in scores)

    @abstractmethod
    def _scores(self, task: str, candidates: Sequence[str]) -> list[float]:
        """A non-negative score per candidate, any scale."""


class ChampionPolicy(RoutingPolicy):
    """The policy file: softmax of utility / temperature (an arm missing from the table has utility 0)."""

    kind: PolicyKind = "champion"

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy.version, policy.exploration)
        self._policy = policy

    def _scores(self, task: str, candidates: Sequence[str]) -> list[float]:
        table = self._policy.utilities(task)
        utilities = [table.get(arm, 0.0) for arm in candidates]
        top = max(utilities)  # shifting by the maximum keeps exp() from overflowing
        return [math.exp((u - top) / self._policy.temperature) for u in utilities]


class ChallengerPolicy(RoutingPolicy):
    """Weights the learner publishes; uniform over the candidates until it publishes any."""

    kind: PolicyKind = "challenger"

    def __init__(self, version: str, weights: Mapping[str, float]) -> None:
        super().__init__(version, 0.0)
        self._weights = dict(weights)

    @classmethod
    def uniform(cls) -> ChallengerPolicy:
        return cls(UNIFORM_VERSION, {})

    @classmethod
    def from_json(cls, raw: bytes | str) -> ChallengerPolicy:
        """``{"version": str, "weights": {"provider/model": w >= 0}}``; ``ValueError`` when it is not."""
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("version"), str):
            raise ValueError("expected an object with a string `version`")
        weights = data.get("weights")
        if not isinstance(weights, dict) or not all(
            isinstance(w, int | float) and not isinstance(w, bool) and w >= 0 and math.isfinite(w)
            for w in weights.values()
        ):
            raise ValueError("expected `weights`: an object of arm -> non-negative number")
        return cls(data["version"], {str(arm): float(w) for arm, w in weights.items()})

    def _scores(self, task: str, candidates: Sequence[str]) -> list[float]:
        return [self._weights.get(arm, 0.0) for arm in candidates]
