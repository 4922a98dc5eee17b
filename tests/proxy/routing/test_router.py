"""Routing: the champion/challenger mixture and its logged propensities, candidate filtering."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from proxy import errors
from proxy.routing.candidates import Arm, Candidates, Constraints, Pin, estimated_cost_usd
from proxy.routing.health import Rules
from proxy.routing.latency import LatencyEstimates
from proxy.routing.router import Router
from symphony.catalog import load_policy
from symphony.keys import CHALLENGER_KEY
from symphony.redis_server import RedisServer
from symphony.serving import ChallengerPolicy, ChampionPolicy, context_of
from tests import reference
from tests.proxy_stack import CATALOG, ProxyStack

POLICY = load_policy(Path(__file__).resolve().parents[3] / "policies" / "champion.json", CATALOG)
ALL_PROVIDERS = list(CATALOG.providers)
MESSAGES = [{"role": "user", "content": "Route me somewhere good."}]


RULES = Rules(
    window_s=10.0,
    failures=3,
    failure_rate=0.5,
    timeouts=2,
    cooldown_s=10.0,
    max_ejected_share=0.5,
    panic_share=0.5,
)


def candidates(latency: LatencyEstimates | None = None) -> Candidates:
    return Candidates(CATALOG, ALL_PROVIDERS, RULES, latency or LatencyEstimates())


def test_mixture_is_a_distribution_with_an_exploration_floor() -> None:
    champion = ChampionPolicy(POLICY)
    arms = candidates().arms
    names = tuple(arm.name for arm in arms)
    challenger = ChallengerPolicy("c1", {names[0]: 5.0, names[1]: 1.0})  # zero for every other arm
    router = Router(champion, lambda: challenger, lambda: 0.25, random.Random(1))
    floor = 0.75 * POLICY.exploration / len(arms)
    for task in ("chat", "code", "an-unknown-task"):
        route = router.route(task, arms)
        assert route.candidates == list(names)
        assert sum(route.probabilities) == pytest.approx(1.0)
        assert min(route.probabilities) >= floor > 0
        champ_probabilities = reference.champion_distribution(
            POLICY.utilities(task), names, POLICY.temperature, POLICY.exploration
        )
        challenger_probabilities = [5 / 6, 1 / 6] + [0.0] * (len(names) - 2)
        expected = [
            0.75 * pc + 0.25 * pch
            for pc, pch in zip(champ_probabilities, challenger_probabilities, strict=True)
        ]
        assert route.probabilities == pytest.approx(expected)
        assert route.propensity == route.probabilities[names.index(route.chosen.name)]
        # Fallbacks: every other candidate once, by champion probability.
        champ = dict(zip(names, champ_probabilities, strict=True))
        rest = [arm.name for arm in route.arms[1:]]
        assert sorted(rest) == sorted(set(names) - {route.chosen.name})
        assert [champ[name] for name in rest] == sorted((champ[name] for name in rest), reverse=True)


def test_champion_prefers_higher_utility() -> None:
    champion = ChampionPolicy(POLICY)
    names = ("openai/gpt-4o-mini", "perplexity/sonar")
    chat = champion.distribution("chat", names)
    search = champion.distribution("search", names)
    assert chat[0] > 0.8 and search[1] > 0.8


def test_challenger_serves_its_share_and_draws_match_the_mixture() -> None:
    arms = candidates().arms
    names = [arm.name for arm in arms]
    challenger = ChallengerPolicy.uniform()
    router = Router(ChampionPolicy(POLICY), lambda: challenger, lambda: 0.3, random.Random(7))
    n = 6000
    routes = [router.route("chat", arms) for _ in range(n)]
    share = sum(route.policy == "challenger" for route in routes) / n
    assert share == pytest.approx(0.3, abs=4 * (0.3 * 0.7 / n) ** 0.5)
    assert {route.policy_version for route in routes if route.policy == "challenger"} == {"uniform"}
    drawn = Counter(route.chosen.name for route in routes)
    for name, p in zip(names, routes[0].probabilities, strict=True):
        assert drawn[name] / n == pytest.approx(p, abs=4 * (p * (1 - p) / n) ** 0.5 + 1e-3)


def test_a_pinned_model_is_an_override_with_propensity_one() -> None:
    arms = candidates().select({"messages": MESSAGES}, Pin("openai", "gpt-4o"), Constraints(), 0.0)
    route = Router(ChampionPolicy(POLICY), ChallengerPolicy.uniform, lambda: 0.5).route(
        "chat", arms, pinned=True
    )
    assert [arm.name for arm in route.arms] == ["openai/gpt-4o"]
    assert (route.policy, route.propensity, route.probabilities) == ("override", 1.0, [1.0])


def names(selected: tuple[Arm, ...]) -> set[str]:
    return {arm.name for arm in selected}


def test_constraints_and_pins_filter_candidates() -> None:
    pool = candidates()
    body = {"messages": MESSAGES, "max_tokens": 100}
    assert names(pool.select(body, Pin(provider="anthropic"), Constraints(), 0.0)) == {
        "anthropic/claude-3-5-haiku-latest",
        "anthropic/claude-sonnet-4-5",
    }
    allowed = Constraints(allowed_providers=frozenset({"grok", "deepseek"}))
    assert names(pool.select(body, None, allowed, 0.0)) == {"grok/grok-3-mini", "deepseek/deepseek-chat"}
    # 100 output tokens: gpt-4o costs ~$0.001, gpt-4o-mini ~$0.00006.
    cheap = Constraints(max_cost_usd=0.0001)
    kept = pool.select(body, None, cheap, 0.0)
    assert "openai/gpt-4o-mini" in names(kept) and "openai/gpt-4o" not in names(kept)
    assert all(estimated_cost_usd(arm, body) <= 0.0001 for arm in kept)
    with pytest.raises(errors.ApiError) as too_cheap:
        pool.select(body, None, Constraints(max_cost_usd=1e-9), 0.0)
    assert too_cheap.value.status == 400 and too_cheap.value.param == "constraints.max_cost_usd"


def test_latency_budget_uses_observed_latency_and_keeps_unmeasured_arms() -> None:
    latency = LatencyEstimates()
    latency.observe("openai/gpt-4o-mini", ttfb_ms=50, latency_ms=900, output_tokens=30, stream=False)
    latency.observe("grok/grok-3-mini", ttfb_ms=50, latency_ms=100, output_tokens=30, stream=False)
    pool = candidates(latency=latency)
    kept = names(pool.select({"messages": MESSAGES}, None, Constraints(latency_budget_ms=500), 0.0))
    assert "grok/grok-3-mini" in kept and "openai/gpt-4o-mini" not in kept
    assert "anthropic/claude-sonnet-4-5" in kept  # never measured: stays, and gets measured
    only = candidates(latency=latency)
    with pytest.raises(errors.ApiError) as slow:
        only.select(
            {"messages": MESSAGES},
            Pin("openai", "gpt-4o-mini"),
            Constraints(latency_budget_ms=500),
            0.0,
        )
    assert slow.value.param == "constraints.latency_budget_ms" and "900" in slow.value.message


def test_capabilities_filter_and_a_pinned_arm_without_one_is_refused() -> None:
    pool = candidates()
    tools = {"messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}]}
    kept = names(pool.select(tools, None, Constraints(), 0.0))
    assert "perplexity/sonar" not in kept and "grok/grok-3-mini" in kept
    with pytest.raises(errors.ApiError) as refused:
        pool.select(tools, Pin("perplexity", "sonar"), Constraints(), 0.0)
    assert refused.value.status == 400 and refused.value.param == "tools"
    assert "perplexity" in refused.value.message and "tool" in refused.value.message
    logprobs = {"messages": MESSAGES, "logprobs": True}
    assert names(pool.select(logprobs, None, Constraints(), 0.0)) == {
        "openai/gpt-4o-mini",
        "openai/gpt-4o",
        "grok/grok-3-mini",
        "deepseek/deepseek-chat",
    }


def test_challenger_policy_parsing() -> None:
    policy = ChallengerPolicy.from_json(
        b'{"version": "v7", "weights": {"grok/grok-3-mini": 2, "openai/gpt-4o": 0}}'
    )
    assert policy.version == "v7"
    assert policy.distribution("chat", ("grok/grok-3-mini", "openai/gpt-4o")) == (1.0, 0.0)
    # Weights that give the candidates nothing: uniform over them.
    assert policy.distribution("chat", ("openai/gpt-4o", "venice/llama-3.3-70b")) == (0.5, 0.5)
    for bad in (b"nope", b"[]", b'{"weights": {}}', b'{"version": "v", "weights": {"a/b": -1}}'):
        with pytest.raises(ValueError):
            ChallengerPolicy.from_json(bad)


def test_logged_propensities_are_the_served_mixture(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    weights = {"grok/grok-3-mini": 3.0, "deepseek/deepseek-chat": 1.0}
    redis_client.set(CHALLENGER_KEY, orjson.dumps({"version": "chal-1", "weights": weights}))
    n = 60
    with (
        ProxyStack(redis_server, traffic_split=0.5) as stack,
        httpx.Client(timeout=10, headers=stack.auth) as client,
    ):
        for i in range(n):
            task = ("chat", "code")[i % 2]
            body = {"task": task, "messages": MESSAGES, "max_tokens": 5}
            answer = client.post(f"{stack.base_url}/route/execute", json=body)
            assert answer.status_code == 200, answer.text
        events = stack.events()
    assert len(events.decisions) == n
    champion = ChampionPolicy(POLICY)
    challenger = ChallengerPolicy("chal-1", weights)
    for decision in events.decisions:
        names_ = tuple(decision.candidates)
        assert len(names_) == 9
        expected = [
            0.5 * pc + 0.5 * pch
            for pc, pch in zip(
                champion.distribution(decision.task, names_),
                challenger.distribution(decision.task, names_),
                strict=True,
            )
        ]
        assert decision.probabilities == pytest.approx(expected)
        assert sum(decision.probabilities) == pytest.approx(1.0)
        chosen = f"{decision.provider}/{decision.model}"
        assert decision.propensity == pytest.approx(decision.probabilities[names_.index(chosen)])
        assert (decision.policy, decision.policy_version) in {
            ("champion", POLICY.version),
            ("challenger", "chal-1"),
        }
        if decision.policy == "challenger":
            assert chosen in weights
    assert 10 <= sum(d.policy == "challenger" for d in events.decisions) <= 50


def test_challenger_feed_follows_redis(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    with (
        ProxyStack(redis_server, traffic_split=1.0) as stack,
        httpx.Client(timeout=10, headers=stack.auth) as client,
    ):

        def served_by() -> tuple[str, str]:
            answer = client.post(
                f"{stack.base_url}/route/execute", json={"messages": MESSAGES, "max_tokens": 5}
            ).json()["decision"]
            return answer["policy_version"], answer["chosen"]

        assert served_by()[0] == "uniform"
        redis_client.set(CHALLENGER_KEY, b'{"version": "v2", "weights": {"venice/llama-3.3-70b": 1}}')
        deadline = time.monotonic() + 5
        while served_by()[0] != "v2":
            assert time.monotonic() < deadline, "the proxy never picked up the published challenger"
            time.sleep(0.1)
        assert served_by() == ("v2", "venice/llama-3.3-70b")
        redis_client.set(CHALLENGER_KEY, b"not json")  # malformed: the last good version keeps serving
        time.sleep(1.3)
        assert served_by() == ("v2", "venice/llama-3.3-70b")


def test_the_challenger_serves_each_request_in_its_context(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    contexts = {"chat": {"short": {"grok/grok-3-mini": 1.0}, "long": {"deepseek/deepseek-chat": 1.0}}}
    redis_client.set(CHALLENGER_KEY, orjson.dumps({"version": "sized", "weights": {}, "contexts": contexts}))
    prompts = {"short": "hi", "long": "lorem ipsum " * 2000}  # about 6,000 tokens by the proxy's estimate
    with (
        ProxyStack(redis_server, traffic_split=1.0) as stack,
        httpx.Client(timeout=30, headers=stack.auth) as client,
    ):
        for prompt in prompts.values():
            body = {"task": "chat", "messages": [{"role": "user", "content": prompt}], "max_tokens": 5}
            answer = client.post(f"{stack.base_url}/route/execute", json=body)
            assert answer.status_code == 200, answer.text
        events = stack.events()
    challenger = ChallengerPolicy.from_json(
        orjson.dumps({"version": "sized", "weights": {}, "contexts": contexts})
    )
    served = {}
    for decision in sorted(events.decisions, key=lambda d: d.ts):
        context = context_of(decision.features)
        served[context] = f"{decision.provider}/{decision.model}"
        expected = challenger.distribution("chat", tuple(decision.candidates), context)
        assert decision.probabilities == pytest.approx(expected)  # the logged numbers are the served ones
    assert served == {"short": "grok/grok-3-mini", "long": "deepseek/deepseek-chat"}
