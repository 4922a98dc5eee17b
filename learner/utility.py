"""The utility of one decision: what the learner maximises, from the policy file's weights per task.

``utility = quality * score + cost * (1 - min(cost_usd / cost_scale_usd, 1))
+ latency * (1 - min(latency_s / latency_scale_s, 1))`` (``symphony.catalog.UtilityWeights``),
in [0, 1]. A request that no attempt answered is worth 0, whatever it cost. A
served request whose feedback never came has no utility yet (``None``): the
learner counts it as timed out rather than guessing its quality.

>>> from symphony.catalog import UtilityWeights
>>> round(utility(UtilityWeights(), Outcome(served=True, score=1.0, cost_usd=0.0, latency_ms=0.0)) or 0, 9)
1.0
>>> utility(UtilityWeights(), Outcome(served=False, score=None, cost_usd=0.002, latency_ms=900.0))
0.0
"""

from __future__ import annotations

from dataclasses import dataclass

from symphony.catalog import UtilityWeights


@dataclass(frozen=True)
class Outcome:
    """What became of one decision: served or not, its feedback score, its total cost and latency."""

    served: bool  # some attempt answered
    score: float | None  # the app's feedback in [0, 1], if it came
    cost_usd: float  # every attempt's cost
    latency_ms: float  # the answer's end-to-end latency (fallbacks included)


def utility(weights: UtilityWeights, outcome: Outcome) -> float | None:
    if not outcome.served:
        return 0.0
    if outcome.score is None:
        return None
    cheapness = 1.0 - min(outcome.cost_usd / weights.cost_scale_usd, 1.0)
    speed = 1.0 - min(outcome.latency_ms / 1000.0 / weights.latency_scale_s, 1.0)
    return weights.quality * outcome.score + weights.cost * cheapness + weights.latency * speed
