"""The windows model against the quota policy file, and the hour-of-day forecaster, by hand."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler.forecast import HourOfDayForecaster, PastWindow
from scheduler.windows import CurrentUse, Slot, slots
from symphony.quotas import load_quota_policy

H = 3_600_000
MIN = 60_000
DAY0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)  # a midnight UTC
NOW = DAY0 + H + 20 * MIN  # 01:20 UTC


def per_hour(provider: str, start: int, end: int) -> int:
    """1,000 tokens an hour, for every provider."""
    return (end - start) * 1000 // H


def of(provider: str, found: list[Slot]) -> list[Slot]:
    return [slot for slot in found if slot.provider == provider]


def test_fixed_windows_align_on_the_epoch_and_cover_the_horizon() -> None:
    found = slots(load_quota_policy(), NOW)
    openai = of("openai", found)
    # 3h windows at 00:00, 03:00, ... UTC; the horizon ends at 13:20, so the last one starts at 12:00
    assert [(s.start_ms - DAY0) // H for s in openai] == [0, 3, 6, 9, 12]
    assert all(s.end_ms - s.start_ms == 3 * H and s.cap == 60_000_000 and not s.first_use for s in openai)
    gemini = of("gemini", found)
    assert [(s.start_ms, s.end_ms, s.cap) for s in gemini] == [(DAY0, DAY0 + 24 * H, 300_000_000)]
    assert {slot.provider for slot in found} == {"openai", "anthropic", "gemini"}  # only subscriptions


def test_first_use_windows_are_candidates_on_the_grid() -> None:
    anthropic = of("anthropic", slots(load_quota_policy(), NOW))
    assert [s.start_ms - NOW for s in anthropic] == [i * 30 * MIN for i in range(24)]
    assert all(s.end_ms - s.start_ms == 5 * H and s.cap == 45_000_000 and s.first_use for s in anthropic)


def test_a_window_open_now_counts_its_use_and_the_forecast_from_now() -> None:
    current = {"openai": CurrentUse(used=10_000_000), "anthropic": CurrentUse(5_000_000, NOW - H)}
    found = slots(load_quota_policy(), NOW, forecast=per_hour, current=current)
    first, second = of("openai", found)[:2]
    assert (first.used, first.forecast, first.available) == (10_000_000, 1666, 60_000_000 - 10_000_000 - 1666)
    assert (second.used, second.forecast) == (0, 3000)
    anthropic = of("anthropic", found)
    open_now = anthropic[0]
    assert (open_now.start_ms, open_now.end_ms, open_now.used, open_now.forecast) == (
        NOW - H,
        NOW + 4 * H,
        5_000_000,
        4000,
    )
    # candidates start when it closes, every 30 minutes to the horizon's end (8h later)
    assert [s.start_ms - NOW - 4 * H for s in anthropic[1:]] == [i * 30 * MIN for i in range(16)]
    assert all(s.forecast == 5000 for s in anthropic[1:])


def test_a_first_use_window_that_closed_is_not_open() -> None:
    current = {"anthropic": CurrentUse(5_000_000, NOW - 5 * H)}  # closed exactly now
    anthropic = of("anthropic", slots(load_quota_policy(), NOW, current=current))
    assert anthropic[0].start_ms == NOW and anthropic[0].used == 0


def test_forecaster_is_the_mean_per_hour_of_day() -> None:
    history = [
        PastWindow("openai", DAY0, DAY0 + 3 * H, 3000),  # 1000 in each of hours 0, 1, 2
        PastWindow("openai", DAY0 + 24 * H, DAY0 + 27 * H, 6000),  # 2000 in each, next day
        PastWindow("openai", DAY0 + 3 * H, DAY0 + 4 * H, 1000),  # hour 3, first day
        PastWindow("openai", DAY0 + 27 * H, DAY0 + 30 * H, 0),  # hours 3-5 observed, quiet
        PastWindow("gemini", DAY0 + 5 * H, DAY0 + 6 * H, 700),
    ]
    forecast = HourOfDayForecaster.from_history(history)
    day = DAY0 + 7 * 24 * H
    assert forecast("openai", day, day + H) == 1500
    assert forecast("openai", day, day + 3 * H) == 4500
    assert forecast("openai", day + 2 * H + 30 * MIN, day + 4 * H) == 750 + 500  # half of hour 2, hour 3
    assert forecast("openai", day + 4 * H, day + 6 * H) == 0  # observed, quiet
    assert forecast("openai", day + 6 * H, day + 7 * H) == 0  # never observed
    assert forecast("gemini", day + 5 * H, day + 5 * H + 15 * MIN) == 175
    assert forecast("anthropic", day, day + 24 * H) == 0


def test_forecaster_feeds_the_windows_model() -> None:
    history = [PastWindow("openai", DAY0 - 24 * H + h * H, DAY0 - 23 * H + h * H, 600) for h in range(24)]
    found = slots(load_quota_policy(), NOW, forecast=HourOfDayForecaster.from_history(history))
    assert [s.forecast for s in of("openai", found)] == [1000, 1800, 1800, 1800, 1800]  # 1h40m first
