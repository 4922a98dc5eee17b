"""Which arm serves a request, with what probability, and in what order the others follow.

A share of requests (``challenger_share()``: ``TRAFFIC_SPLIT``, or the live flags
of ``symphony.flags``) is drawn by the challenger, the rest by the champion.
Whichever draws, the decision logs the distribution actually served, the
mixture ``(1 - s) * p_champion + s * p_challenger`` over the candidates, and the
chosen arm's probability under it (its propensity), so the learner can evaluate
any policy off-line. A pinned model is an ``override`` with propensity 1.

The arms after the chosen one are the fallback order: the other candidates by
champion probability, highest first.

``weights`` (from ``proxy.routing.health``: a provider answering a share of 429s or failures)
lower an arm's share: each policy's distribution is multiplied by them and
renormalised before the draw, and the logged mixture is that of the weighted
distributions, so the propensities stay the ones actually served.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from proxy.routing.candidates import Arm
from symphony.catalog import Catalog, load_policy, resolve_policy_path
from symphony.events import PolicyKind
from symphony.serving import ChallengerPolicy, ChampionPolicy, RoutingPolicy

OVERRIDE_VERSION = "override"


@dataclass(frozen=True, slots=True)
class Route:
    arms: tuple[Arm, ...]  # the chosen arm, then the fallbacks in order
    policy: PolicyKind
    policy_version: str
    candidates: list[str]
    probabilities: list[float]  # under the mixture served
    propensity: float

    @property
    def chosen(self) -> Arm:
        return self.arms[0]


class Router:
    def __init__(
        self,
        champion: ChampionPolicy,
        challenger: Callable[[], ChallengerPolicy],
        challenger_share: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self.champion = champion
        self._challenger = challenger
        self._share = challenger_share
        self._rng = rng if rng is not None else random.Random()

    def route(
        self,
        task: str,
        candidates: tuple[Arm, ...],
        *,
        pinned: bool = False,
        weights: tuple[float, ...] | None = None,
        context: str = "",
    ) -> Route:
        """Draw an arm among ``candidates``; a pinned single arm is served as an override."""
        if pinned and len(candidates) == 1:
            arm = candidates[0]
            return Route(candidates, "override", OVERRIDE_VERSION, [arm.name], [1.0], 1.0)
        names = tuple(arm.name for arm in candidates)
        champion = self.champion.distribution(task, names, context)
        challenger_policy = self._challenger()
        challenger = challenger_policy.distribution(task, names, context)
        if weights is not None:
            champion, challenger = _weighted(champion, weights), _weighted(challenger, weights)
        s = self._share()
        mixture = [(1.0 - s) * pc + s * pch for pc, pch in zip(champion, challenger, strict=True)]
        drawer: RoutingPolicy = challenger_policy if self._rng.random() < s else self.champion
        index = self._draw(champion if drawer is self.champion else challenger)
        rest = sorted((i for i in range(len(candidates)) if i != index), key=lambda i: -champion[i])
        return Route(
            (candidates[index], *(candidates[i] for i in rest)),
            drawer.kind,
            drawer.version,
            list(names),
            mixture,
            mixture[index],
        )

    def _draw(self, probabilities: tuple[float, ...]) -> int:
        cumulative = list(accumulate(probabilities))
        index = bisect.bisect_right(cumulative, self._rng.random() * cumulative[-1])
        return min(index, len(probabilities) - 1)


def _weighted(probabilities: tuple[float, ...], weights: tuple[float, ...]) -> tuple[float, ...]:
    scaled = [p * w for p, w in zip(probabilities, weights, strict=True)]
    total = sum(scaled)
    return tuple(p / total for p in scaled) if total > 0 else probabilities


def load_champion(policy_file: Path, catalog: Catalog) -> ChampionPolicy:
    return ChampionPolicy(load_policy(resolve_policy_path(policy_file), catalog))
