"""The median of a figure over a benchmark's repeats, and its range: what every bench here reports."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """The median over the repeats and the range (min, max); None when no repeat had the figure."""

    median: float | None
    low: float | None
    high: float | None

    @staticmethod
    def of(values: Sequence[float | None]) -> Spread:
        known = [value for value in values if value is not None]
        if not known:
            return Spread(None, None, None)
        return Spread(statistics.median(known), min(known), max(known))

    @property
    def relative(self) -> float | None:
        """The range as a share of the median: (max - min) / median."""
        if self.median is None or self.low is None or self.high is None or not self.median:
            return None
        return (self.high - self.low) / self.median
