"""Independent models of rules the code implements, written plainly for tests to compare against."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def champion_distribution(
    utilities: Mapping[str, float], arms: Sequence[str], temperature: float, exploration: float
) -> list[float]:
    """Softmax of utility / temperature over ``arms`` (a missing arm counts 0), plus an even floor."""
    weights = [math.exp(utilities.get(arm, 0.0) / temperature) for arm in arms]
    total = sum(weights)
    return [(1 - exploration) * w / total + exploration / len(arms) for w in weights]


def cost_usd(input_per_mtok: float, output_per_mtok: float, input_tokens: int, output_tokens: int) -> float:
    """Prices are per million tokens."""
    return (input_tokens * input_per_mtok + output_tokens * output_per_mtok) / 1_000_000
