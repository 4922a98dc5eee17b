"""``proxy.routing.health`` against a plain model of its rules, written here from the rules alone.

The plain model keeps every attempt in a list and recomputes everything from it (the
window, the cap, the panic rule, the traffic shares); the implementation keeps bucket
counters and sets. Random walks through time hold the two together after every step.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest

from proxy import errors
from proxy.routing.candidates import Candidates, Constraints, Pin
from proxy.routing.health import Health, Outcome, Rules
from proxy.routing.latency import LatencyEstimates
from tests.proxy_stack import CATALOG

RULES = Rules(
    window_s=10.0,
    failures=3,  # above timeouts, so the timeout rule is seen on its own
    failure_rate=0.5,
    timeouts=2,
    cooldown_s=3.0,
    max_ejected_share=0.5,
    panic_share=0.5,
)
POOL = [("a", "a/1"), ("a", "a/2"), ("b", "b/1"), ("c", "c/1"), ("d", "d/1"), ("d", "d/2")]
PROVIDERS = sorted({p for p, _ in POOL})


@dataclass
class Plain:
    """The rules, spelled out: every attempt kept, every figure recomputed."""

    rules: Rules
    pool: list[tuple[str, str]]
    attempts: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # since the last restore
    out_until: dict[str, float] = field(default_factory=dict)  # ejected providers
    ejections: dict[str, int] = field(default_factory=dict)
    on_trial: set[str] = field(default_factory=set)
    cooled: dict[str, float] = field(default_factory=dict)  # provider or arm -> until

    def arms_of(self, provider: str) -> int:
        return len([1 for p, _ in self.pool if p == provider])

    def recent(self, provider: str, now: float) -> list[str]:
        """Outcomes in the window: the current tenth of it and the nine before."""
        tenth = self.rules.window_s / 10
        return [
            kind
            for t, kind in self.attempts.get(provider, [])
            if math.floor(now / tenth) - 10 < math.floor(t / tenth) <= math.floor(now / tenth)
        ]

    def ejected(self, provider: str, now: float) -> bool:
        return provider in self.out_until and (now < self.out_until[provider] or provider in self.on_trial)

    def is_cooled(self, key: str, now: float) -> bool:
        return self.cooled.get(key, -1.0) > now

    def panic(self, now: float) -> bool:
        if not any(until > now for until in self.cooled.values()):
            return False
        up = sum(
            1
            for p, arm in self.pool
            if not (self.ejected(p, now) or self.is_cooled(p, now) or self.is_cooled(arm, now))
        )
        return up < self.rules.panic_share * len(self.pool)

    def available(self, provider: str, arm: str, now: float) -> bool:
        if self.ejected(provider, now):
            return False
        return not (self.is_cooled(provider, now) or self.is_cooled(arm, now)) or self.panic(now)

    def begin(self, provider: str, arm: str, now: float) -> bool:
        if not self.available(provider, arm, now):
            return False
        if provider in self.out_until:
            self.on_trial.add(provider)
        return True

    def eject(self, provider: str, now: float) -> None:
        already = sum(self.arms_of(p) for p in self.out_until if p != provider and self.ejected(p, now))
        if already + self.arms_of(provider) > self.rules.max_ejected_share * len(self.pool):
            self.out_until.pop(provider, None)
            self.ejections[provider] = 0
            return
        self.ejections[provider] = self.ejections.get(provider, 0) + 1
        factor = min(8, 2 ** (self.ejections[provider] - 1))
        self.out_until[provider] = now + self.rules.cooldown_s * factor

    def record(
        self, provider: str, arm: str, outcome: Outcome, now: float, retry: float | None, exhausted: bool
    ) -> None:
        if outcome == "neutral":
            self.on_trial.discard(provider)
            return
        self.attempts.setdefault(provider, []).append((now, outcome))
        trial_time = provider in self.out_until and now >= self.out_until[provider]
        if outcome == "ok":
            if trial_time:
                del self.out_until[provider]
                self.ejections[provider] = 0
                self.on_trial.discard(provider)
                self.attempts[provider] = []
            return
        if outcome == "throttled":
            self.on_trial.discard(provider)
            wait = retry if retry else 1.0
            if exhausted:
                self.cooled[arm] = max(self.cooled.get(arm, 0.0), now + wait)
                return
            recent = self.recent(provider, now)
            n429 = recent.count("throttled")
            if n429 >= self.rules.failures and n429 >= self.rules.failure_rate * len(recent):
                self.cooled[provider] = max(self.cooled.get(provider, 0.0), now + wait)
            return
        if trial_time and provider in self.on_trial:
            self.on_trial.discard(provider)
            self.eject(provider, now)
            return
        if provider in self.out_until:
            return  # an attempt from before the ejection
        recent = self.recent(provider, now)
        bad = sum(kind in ("failure", "timeout") for kind in recent)
        slow = recent.count("timeout")
        if (bad >= self.rules.failures and bad >= self.rules.failure_rate * len(recent)) or (
            slow >= self.rules.timeouts and slow >= self.rules.failure_rate * len(recent)
        ):
            self.eject(provider, now)

    def weight(self, provider: str, now: float) -> float:
        recent = self.recent(provider, now)
        if len(recent) < self.rules.failures:
            return 1.0
        bad = sum(kind != "ok" for kind in recent)
        return max(0.05, 1 - bad / len(recent))

    def retry_in(self, provider: str, arm: str, now: float) -> float:
        untils = [
            self.out_until.get(provider, now),
            self.cooled.get(provider, now),
            self.cooled.get(arm, now),
        ]
        return max(0.0, *(until - now for until in untils))


OUTCOMES: list[Outcome] = ["ok", "ok", "ok", "failure", "timeout", "throttled", "neutral"]


def _check(health: Health, plain: Plain, now: float) -> None:
    assert health.panic(now) == plain.panic(now)
    for provider, arm in POOL:
        assert health.available(provider, arm, now) == plain.available(provider, arm, now), (provider, arm)
        assert health.retry_in(provider, arm, now) == pytest.approx(plain.retry_in(provider, arm, now))
    shares = health.weights(PROVIDERS, now)
    expected = [plain.weight(p, now) for p in PROVIDERS]
    if shares is None:
        assert expected == [1.0] * len(PROVIDERS)
    else:
        assert list(shares) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(60))
def test_health_follows_the_plain_rules(seed: int) -> None:
    rng = random.Random(seed)
    # Each walk leans on a few providers, so ejections, the cap and the panic rule all come up.
    troubled = {p: rng.choice([0.1, 0.5, 0.9]) for p in PROVIDERS}
    health, plain = Health(RULES, POOL), Plain(RULES, POOL)
    now = 0.0
    for _ in range(400):
        now += rng.choice([0.0, 0.05, 0.3, 1.0, 2.5])
        provider, arm = rng.choice(POOL)
        if rng.random() < 0.3:
            assert health.begin(provider, arm, now) == plain.begin(provider, arm, now)
        else:
            outcome = rng.choice(OUTCOMES) if rng.random() < troubled[provider] else "ok"
            retry = rng.choice([None, 0.5, 2.0, 7.0])
            exhausted = rng.random() < 0.3
            health.record(provider, arm, outcome, now, retry_after_s=retry, exhausted=exhausted)
            plain.record(provider, arm, outcome, now, retry, exhausted)
        _check(health, plain, now)


def test_every_provider_flaky_never_empties_the_pool() -> None:
    """A third of every provider's answers fail (20% 429s that cool it for 1 s): the pool stays up."""
    pool = [(p, f"{p}/m") for p in "abcdefg"]
    health = Health(Rules(10.0, 5, 0.5, 2, 10.0, 0.5, 0.5), pool)
    rng = random.Random(7)
    now = 0.0
    for _ in range(5000):
        now += 0.01
        provider, arm = rng.choice(pool)
        u = rng.random()
        outcome: Outcome = (
            "throttled" if u < 0.2 else "failure" if u < 0.3 else "timeout" if u < 0.33 else "ok"
        )
        health.record(provider, arm, outcome, now, retry_after_s=1.0)
        up = sum(health.available(p, a, now) for p, a in pool)
        assert up >= len(pool) / 2, (now, up)


def test_cap_keeps_half_the_pool_and_a_trial_restores() -> None:
    health = Health(RULES, POOL)
    for t in (0.0, 0.05, 0.1):
        health.record("a", "a/1", "failure", t)  # a: 2 arms out
    assert not health.available("a", "a/2", 0.2)
    for t in (0.2, 0.25, 0.3):
        health.record("d", "d/1", "timeout", t)  # d would make 4 of 6 out: over the cap
    assert health.available("d", "d/1", 0.4)
    assert health.weights(["a", "d"], 0.4) == (0.05, 0.05)
    # After the cooldown one trial goes through; it succeeds and a is back with a fresh window.
    assert health.begin("a", "a/1", 3.1) and not health.begin("a", "a/2", 3.1)
    health.record("a", "a/1", "ok", 3.2)
    assert health.available("a", "a/2", 3.2) and health.weights(["a"], 3.2) is None


def test_lagging_providers_are_named_while_they_wait() -> None:
    health = Health(RULES, POOL)
    health.wait("b", 1, 0.0, 2.0)
    assert not health.lagging("b", 0.9) and health.lagging("b", 1.0)
    health.answered("b", 1)
    assert not health.lagging("b", 1.0)


def test_an_unproven_provider_is_probed_by_two_attempts_until_it_answers() -> None:
    health = Health(RULES, POOL)
    health.wait("b", 1, 0.0, 2.0)
    assert not health.probed("b", 0.1)  # one probe waiting
    health.wait("b", 2, 0.0, 2.0)
    assert health.probed("b", 0.1) and not health.lagging("b", 0.1)  # two, and b never answered
    health.answered("b", 1)
    health.answered("b", 2)
    health.record("b", "b/1", "ok", 0.2)
    for attempt in (3, 4, 5):
        health.wait("b", attempt, 0.2, 100.0)
    assert not health.probed("b", 0.3)  # b answered within the window: any number may wait
    assert health.probed("b", 0.3 + RULES.window_s)  # its answer has left the window


def _candidates() -> Candidates:
    return Candidates(CATALOG, list(CATALOG.providers), RULES, LatencyEstimates())


def test_a_refusal_says_which_limit_from_whom_and_when() -> None:
    pool = _candidates()
    health = pool.health
    body = {"messages": [{"role": "user", "content": "hi"}]}
    health.record("grok", "grok/grok-3-mini", "throttled", 0.0, retry_after_s=4.0, exhausted=True)
    with pytest.raises(errors.ApiError) as cooled:
        pool.select(body, Pin(provider="grok"), Constraints(), 1.0)
    assert cooled.value.status == 429 and cooled.value.headers["retry-after"] == "3"
    assert "grok/grok-3-mini answered 429: its rate limit is used up (retry-after 4 s)" in str(cooled.value)
    for t in (1.0, 1.05, 1.1):
        health.record("openai", "openai/gpt-4o", "failure", t)
    with pytest.raises(errors.ApiError) as ejected:
        pool.select(body, Pin(provider="openai"), Constraints(), 2.0)
    assert ejected.value.status == 503 and ejected.value.headers["retry-after"] == "3"
    assert "openai is ejected for 3 s: 3 of 3 attempts failed in 10 s" in str(ejected.value)
    everyone = {arm.name for arm in pool.select(body, None, Constraints(), 2.0)}
    assert not any(name.startswith(("openai/", "grok/")) for name in everyone)
    assert pool.select(body, Pin(provider="grok"), Constraints(), 4.0)  # the retry-after holds
