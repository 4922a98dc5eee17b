"""The quotas dataflow's ETAs (``ProviderUsage``): a time to exhaustion only where the burn fills it."""

from __future__ import annotations

from symphony.quotas import ROLLING, Limit, ProviderUsage, subscription_window


def _fed(*limits: Limit) -> ProviderUsage:
    """20 tokens at the start of each of the first 30 seconds: 600 tokens, 200 in each 10 s bucket."""
    usage = ProviderUsage("grok", list(limits))
    for second in range(30):
        usage.add(second * 1000, 0, 20)
    return usage


def _exhaust(cap: int, now: int = 29_500) -> int | None:
    (eta,) = _fed(Limit("grok", "tokens", ROLLING["minute"], cap)).etas(now)
    return eta.exhaust_in_ms


def test_a_minute_window_fills_only_when_the_burn_outruns_what_leaves() -> None:
    # The last minute burned 600 tokens: 10 a second. Against 1,200 a minute it never fills (the old
    # ETA said (1,200 - 600) / 600 minutes = 60 s); against 500 it is already full.
    assert _exhaust(1200) is None
    assert _exhaust(500) == 0
    # Against 650: +5 by the bucket edge 0.5 s on (605; the bucket leaving is empty), then 45 more at
    # 10 a second: 4.5 s, so full 5 s from now.
    assert _exhaust(650) == 5000


def test_a_fixed_window_has_an_eta_only_if_it_fills_before_it_resets() -> None:
    window = subscription_window("1m", "fixed")
    (short,) = _fed(Limit("grok", "tokens", window, 900)).etas(29_500)
    assert short.exhaust_in_ms == 30_000  # 300 left at 10 a second; the window ends in 30.5 s
    (long,) = _fed(Limit("grok", "tokens", window, 1000)).etas(29_500)
    assert long.exhaust_in_ms is None  # 40 s for 400 left: the window resets first
