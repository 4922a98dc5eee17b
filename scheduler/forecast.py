"""A simple forecast of interactive use: the mean tokens per UTC hour of day, from past windows.

Each past window's tokens are spread evenly over its span and summed per clock hour;
the forecast for hour of day ``h`` is the mean of those sums over every observed hour
with that hour of day (an hour counts as observed when some past window covers any
of it, so a quiet observed hour pulls the mean down). A span's forecast is the sum of
the hours it overlaps, each weighted by the fraction of it inside the span. An hour
of day never observed forecasts 0.

>>> from symphony.quotas import DAY_MS
>>> past = [PastWindow("openai", 0, 3 * HOUR_MS, 3000), PastWindow("openai", DAY_MS, DAY_MS + HOUR_MS, 3000)]
>>> forecaster = HourOfDayForecaster.from_history(past)
>>> forecaster("openai", 2 * DAY_MS, 2 * DAY_MS + HOUR_MS)  # hour 0: (1000 + 3000) / 2
2000
>>> forecaster("openai", 2 * DAY_MS + HOUR_MS + HOUR_MS // 2, 2 * DAY_MS + 2 * HOUR_MS)  # half of hour 1
500
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from symphony.quotas import HOUR_MS


@dataclass(frozen=True, slots=True)
class PastWindow:
    """Interactive tokens a provider used in one past window."""

    provider: str
    start_ms: int
    end_ms: int
    tokens: int


@dataclass(frozen=True)
class HourOfDayForecaster:
    """Mean interactive tokens per (provider, UTC hour of day); callable as a ``Forecast``."""

    hourly: dict[tuple[str, int], float] = field(default_factory=dict)

    @classmethod
    def from_history(cls, history: Iterable[PastWindow]) -> HourOfDayForecaster:
        per_hour: dict[tuple[str, int], float] = defaultdict(float)  # (provider, absolute hour) -> tokens
        for past in history:
            span = past.end_ms - past.start_ms
            for hour, overlap in _hours(past.start_ms, past.end_ms):
                per_hour[(past.provider, hour)] += past.tokens * overlap / span
        sums: dict[tuple[str, int], list[float]] = defaultdict(list)
        for (provider, hour), tokens in per_hour.items():
            sums[(provider, hour % 24)].append(tokens)
        return cls({key: sum(values) / len(values) for key, values in sums.items()})

    def __call__(self, provider: str, start_ms: int, end_ms: int) -> int:
        total = 0.0
        for hour, overlap in _hours(start_ms, end_ms):
            total += self.hourly.get((provider, hour % 24), 0.0) * overlap / HOUR_MS
        return round(total)


def _hours(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """(absolute hour, ms of it inside [start, end)) for every hour the span touches."""
    out = []
    for hour in range(start_ms // HOUR_MS, -(-end_ms // HOUR_MS)):
        overlap = min(end_ms, (hour + 1) * HOUR_MS) - max(start_ms, hour * HOUR_MS)
        if overlap > 0:
            out.append((hour, overlap))
    return out
