"""Which arm serves a request, and with what probability.

- ``model="auto"`` (see ``AUTO_MODELS``): the static champion policy draws an arm at
  random by weight. The decision logs every candidate, its serving probability and
  the chosen arm's propensity, so the learner can evaluate other policies off-line.
- a catalog model, as ``gpt-4o`` or ``openai/gpt-4o``: that arm, policy
  ``override``, propensity 1.
- anything else: ``None`` (the caller answers 404 ``model_not_found``).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from symphony.catalog import POLICIES_DIR, Catalog, Policy, load_policy
from symphony.events import PolicyKind

AUTO_MODELS = frozenset({"auto"})


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    model: str
    policy: PolicyKind
    policy_version: str
    candidates: list[str]
    probabilities: list[float]
    propensity: float

    @property
    def arm(self) -> str:
        return f"{self.provider}/{self.model}"


class Router:
    def __init__(self, catalog: Catalog, champion: Policy, rng: random.Random | None = None) -> None:
        self._catalog = catalog
        self._champion = champion
        self._rng = rng if rng is not None else random.Random()
        total = sum(arm.weight for arm in champion.arms)
        self._candidates = [arm.name for arm in champion.arms]
        self._probabilities = [arm.weight / total for arm in champion.arms]
        self._cumulative = list(accumulate(self._probabilities))

    @property
    def policy_version(self) -> str:
        return self._champion.version

    def route(self, model: str) -> Route | None:
        if model in AUTO_MODELS:
            return self._draw()
        found = self._catalog.find_model(model)
        if found is None:
            return None
        provider, name = found
        return Route(provider, name, "override", self._champion.version, [f"{provider}/{name}"], [1.0], 1.0)

    def _draw(self) -> Route:
        index = min(bisect.bisect_right(self._cumulative, self._rng.random()), len(self._cumulative) - 1)
        arm = self._champion.arms[index]
        return Route(
            arm.provider,
            arm.model,
            "champion",
            self._champion.version,
            self._candidates,
            self._probabilities,
            self._probabilities[index],
        )


def resolve_policy_path(path: Path) -> Path:
    """``path`` as given if it exists, else under the repository (``policies/…``) or ``policies/``."""
    if path.is_absolute() or path.exists():
        return path
    for base in (POLICIES_DIR.parent, POLICIES_DIR):
        if (base / path).exists():
            return base / path
    raise FileNotFoundError(
        f"policy file {path} not found (looked in ., {POLICIES_DIR.parent}, {POLICIES_DIR})"
    )


def load_router(policy_file: Path, catalog: Catalog, rng: random.Random | None = None) -> Router:
    return Router(catalog, load_policy(resolve_policy_path(policy_file), catalog), rng)
