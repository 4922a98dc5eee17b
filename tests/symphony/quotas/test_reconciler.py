"""The reconciler's rule: note every new difference, cap at the lower of policy and provider."""

from __future__ import annotations

from symphony.quotas import ROLLING, Limit
from symphony.quotas.reconciler import REFRESH_AFTER_MS, Reconciler, observed_limits

RPM = Limit("openai", "requests", ROLLING["minute"], 5000)
TPM = Limit("openai", "tokens", ROLLING["minute"], 2_000_000)
DAY = Limit("openai", "requests", ROLLING["day"], 10)


def reconciler() -> Reconciler:
    return Reconciler([RPM, TPM, DAY])


def test_reads_openai_and_anthropic_headers() -> None:
    assert observed_limits({"x-ratelimit-limit-requests": "60", "x-ratelimit-limit-tokens": "9000"}) == {
        ("requests", "minute"): 60,
        ("tokens", "minute"): 9000,
    }
    assert observed_limits({"anthropic-ratelimit-requests-limit": "50", "retry-after": "3"}) == {
        ("requests", "minute"): 50
    }
    assert observed_limits({"x-ratelimit-limit-requests": "lots"}) == {}


def test_lower_report_is_noted_once_and_becomes_the_cap() -> None:
    rec = reconciler()
    [first] = rec.observe({"x-ratelimit-limit-requests": "100"}, 0)
    assert (first.noted, first.applies, first.previous, first.target) == (True, True, 5000, 100)
    assert rec.observe({"x-ratelimit-limit-requests": "100"}, 1000) == []
    assert rec.caps_in_force() == {RPM: 100}


def test_higher_report_is_noted_but_never_lifts_the_policy_cap() -> None:
    rec = reconciler()
    [note] = rec.observe({"x-ratelimit-limit-requests": "1000000"}, 0)
    assert (note.noted, note.applies, note.target) == (True, False, 5000)
    assert rec.caps_in_force() == {}


def test_provider_back_at_policy_restores_the_policy_cap() -> None:
    rec = reconciler()
    rec.observe({"x-ratelimit-limit-requests": "100"}, 0)
    [back] = rec.observe({"x-ratelimit-limit-requests": "5000"}, 10)
    assert (back.noted, back.applies, back.changes_cap, back.target) == (False, True, True, 5000)


def test_runtime_cap_ttl_is_refreshed_silently_while_reported() -> None:
    rec = reconciler()
    rec.observe({"x-ratelimit-limit-tokens": "9000"}, 0)
    assert rec.observe({"x-ratelimit-limit-tokens": "9000"}, REFRESH_AFTER_MS - 1) == []
    [refresh] = rec.observe({"x-ratelimit-limit-tokens": "9000"}, REFRESH_AFTER_MS)
    assert (refresh.noted, refresh.applies, refresh.changes_cap) == (False, True, False)


def test_day_windows_are_not_reported_by_providers() -> None:
    assert [a.limit for a in reconciler().observe({"x-ratelimit-limit-requests": "7"}, 0)] == [RPM]
