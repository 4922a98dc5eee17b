"""The serving distribution: what each routing policy gives each candidate arm of one request.

One implementation, shared: the proxy serves these probabilities and logs them,
the learner evaluates policies with the very same numbers.
``RoutingPolicy.distribution()`` applies the rules every policy shares: only the
candidates get probability, scores are normalised, a policy whose scores say
nothing (all zero) serves uniformly, and ``exploration`` is spread evenly over the
candidates so each keeps a non-zero (floor) probability. A policy fills in ``_scores()``.

>>> from symphony.catalog import Policy
>>> champion = ChampionPolicy(Policy(name="c", version="1", temperature=0.1, exploration=0.0,
...                                  tasks={"default": {"a/x": 0.7, "b/y": 0.6}}))
>>> [round(p, 3) for p in champion.distribution("chat", ("a/x", "b/y"))]
[0.731, 0.269]
>>> ChallengerPolicy.uniform().distribution("chat", ("a/x", "b/y", "c/z"))
(0.3333333333333333, 0.3333333333333333, 0.3333333333333333)
>>> by_task = ChallengerPolicy("v2", {"a/x": 1.0}, tasks={"code": {"b/y": 3.0, "a/x": 1.0}}, exploration=0.2)
>>> [round(p, 3) for p in by_task.distribution("code", ("a/x", "b/y"))]
[0.3, 0.7]
>>> [round(p, 3) for p in by_task.distribution("chat", ("a/x", "b/y"))]
[0.9, 0.1]

The challenger is contextual: besides the task, a request's context (``context_of``: the
size of its prompt, ``short``, ``medium`` or ``long``) may select its own table, so the same
task can prefer one arm for short prompts and another for long ones. The proxy computes
the context from the features it logs with the decision; the learner from those same
logged features, so both use one distribution.

>>> sized = ChallengerPolicy("v3", {}, contexts={"code": {"long": {"b/y": 1.0}}})
>>> sized.distribution("code", ("a/x", "b/y"), context_of({"prompt_tokens": 5000.0}))
(0.0, 1.0)
>>> sized.distribution("code", ("a/x", "b/y"), context_of({"prompt_tokens": 20.0}))
(0.5, 0.5)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from symphony.catalog import Policy
from symphony.events import PolicyKind

UNIFORM_VERSION = "uniform"
# Prompt sizes (estimated prompt tokens) that make a request's context: below 256, below 2048, more.
CONTEXT_LIMITS = ((256, "short"), (2048, "medium"))
LONGEST_CONTEXT = "long"
CONTEXTS = (*(name for _limit, name in CONTEXT_LIMITS), LONGEST_CONTEXT)


def context_of(features: Mapping[str, float]) -> str:
    """A request's context from its logged features: the size of its prompt."""
    tokens = features.get("prompt_tokens", 0.0)
    return next((name for limit, name in CONTEXT_LIMITS if tokens < limit), LONGEST_CONTEXT)


@dataclass(frozen=True)
class PublishedChallenger:
    """A challenger as the learner publishes it: its version and the JSON every proxy replica reads."""

    version: str
    payload: bytes


# Distinct (task, candidate set) pairs are few; the cache is a bound, not a tuning knob.
_CACHE_SIZE = 4096


class RoutingPolicy(ABC):
    kind: PolicyKind

    def __init__(self, version: str, exploration: float) -> None:
        self.version = version
        self.exploration = exploration
        self._cache: dict[tuple[str, str, tuple[str, ...]], tuple[float, ...]] = {}

    def distribution(self, task: str, candidates: tuple[str, ...], context: str = "") -> tuple[float, ...]:
        """Serving probability of each candidate (same order) for a request of ``task`` in ``context``
        (``context_of``; a policy may ignore it); sums to 1."""
        key = (task, context, candidates)
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            cached = self._cache[key] = self._distribution(task, candidates, context)
        return cached

    def _distribution(self, task: str, candidates: tuple[str, ...], context: str) -> tuple[float, ...]:
        n = len(candidates)
        scores = self._scores(task, candidates, context)
        total = sum(scores)
        if not (total > 0 and math.isfinite(total)):
            return tuple(1.0 / n for _ in candidates)
        share = self.exploration / n
        return tuple((1.0 - self.exploration) * score / total + share for score in scores)

    @abstractmethod
    def _scores(self, task: str, candidates: Sequence[str], context: str) -> list[float]:
        """A non-negative score per candidate, any scale."""


class ChampionPolicy(RoutingPolicy):
    """The policy file: softmax of utility / temperature (an arm missing from the table has utility 0)."""

    kind: PolicyKind = "champion"

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy.version, policy.exploration)
        self._policy = policy

    @property
    def policy(self) -> Policy:
        """The policy file as read."""
        return self._policy

    def _scores(self, task: str, candidates: Sequence[str], context: str) -> list[float]:
        table = self._policy.utilities(task)  # the champion's tables are per task only
        utilities = [table.get(arm, 0.0) for arm in candidates]
        top = max(utilities)  # shifting by the maximum keeps exp() from overflowing
        return [math.exp((u - top) / self._policy.temperature) for u in utilities]


class ChallengerPolicy(RoutingPolicy):
    """Weights the learner publishes, per task (``tasks``) or for every task (``weights``).

    Uniform over the candidates until it publishes any; ``exploration`` is the floor
    share spread over the candidates, as for the champion.
    """

    kind: PolicyKind = "challenger"

    def __init__(
        self,
        version: str,
        weights: Mapping[str, float],
        *,
        tasks: Mapping[str, Mapping[str, float]] | None = None,
        contexts: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
        exploration: float = 0.0,
    ) -> None:
        super().__init__(version, exploration)
        self._weights = dict(weights)
        self._tasks = {task: dict(table) for task, table in (tasks or {}).items()}
        self._contexts = {
            task: {context: dict(table) for context, table in by_context.items()}
            for task, by_context in (contexts or {}).items()
        }

    @classmethod
    def uniform(cls) -> ChallengerPolicy:
        return cls(UNIFORM_VERSION, {})

    @classmethod
    def like(cls, champion: Policy, arms: Iterable[str], version: str) -> ChallengerPolicy:
        """The champion's own distribution over ``arms`` (the catalog's) as a challenger: an A/A test's.

        >>> policy = Policy(name="c", version="1", temperature=0.1, exploration=0.05,
        ...                 tasks={"default": {"a/x": 0.7, "b/y": 0.6}, "code": {"b/y": 0.9, "c/z": 0.2}})
        >>> arms = ("a/x", "b/y", "c/z")
        >>> twin = ChallengerPolicy.like(policy, arms, "aa")
        >>> all(abs(p - q) < 1e-12 for task in ("code", "chat") for p, q in zip(
        ...     twin.distribution(task, arms), ChampionPolicy(policy).distribution(task, arms)))
        True
        """
        tables = {}
        for task in champion.tasks:
            utilities = {arm: champion.utilities(task).get(arm, 0.0) for arm in arms}
            top = max(utilities.values())
            tables[task] = {arm: math.exp((u - top) / champion.temperature) for arm, u in utilities.items()}
        return cls(version, tables["default"], tasks=tables, exploration=champion.exploration)

    def to_json(self) -> bytes:
        """What ``from_json`` reads back."""
        return orjson.dumps(
            {
                "version": self.version,
                "weights": self._weights,
                "tasks": self._tasks,
                "contexts": self._contexts,
                "exploration": self.exploration,
            },
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> ChallengerPolicy:
        """``{"version": str, "weights": {arm: w}, "tasks"?: {task: {arm: w}},
        "contexts"?: {task: {context: {arm: w}}}, "exploration"?: [0, 1)}``.

        Weights are non-negative numbers; ``ValueError`` says what is wrong otherwise.
        """
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("version"), str):
            raise ValueError("expected an object with a string `version`")
        weights = _weights(data.get("weights"), "`weights`")
        tasks = data.get("tasks", {})
        if not isinstance(tasks, dict):
            raise ValueError("expected `tasks`: an object of task -> weights")
        exploration = data.get("exploration", 0.0)
        if not _number(exploration) or not 0.0 <= exploration < 1.0:
            raise ValueError("expected `exploration`: a number from 0 up to 1")
        return cls(
            data["version"],
            weights,
            tasks={str(task): _weights(table, f"`tasks.{task}`") for task, table in tasks.items()},
            contexts=_contexts(data.get("contexts", {})),
            exploration=float(exploration),
        )

    def tables(self, tasks: Iterable[str]) -> dict[str, dict[str, float]]:
        """The weights it serves each of ``tasks`` and each task of its own (empty tables left out)."""
        every = {*tasks, *self._tasks}
        served = {task: self._tasks.get(task, self._weights) for task in sorted(every)}
        return {task: dict(table) for task, table in served.items() if table}

    def _scores(self, task: str, candidates: Sequence[str], context: str) -> list[float]:
        table = self._contexts.get(task, {}).get(context) or self._tasks.get(task, self._weights)
        return [table.get(arm, 0.0) for arm in candidates]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _weights(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or not all(_number(w) and w >= 0 for w in value.values()):
        raise ValueError(f"expected {where}: an object of arm -> non-negative number")
    return {str(arm): float(w) for arm, w in value.items()}


def _contexts(value: Any) -> dict[str, dict[str, dict[str, float]]]:
    if not isinstance(value, dict) or not all(isinstance(by, dict) for by in value.values()):
        raise ValueError("expected `contexts`: an object of task -> context -> weights")
    unknown = sorted({str(c) for by in value.values() for c in by} - set(CONTEXTS))
    if unknown:
        raise ValueError(f"unknown contexts {', '.join(unknown)}: the contexts are {', '.join(CONTEXTS)}")
    return {
        str(task): {str(c): _weights(table, f"`contexts.{task}.{c}`") for c, table in by.items()}
        for task, by in value.items()
    }
