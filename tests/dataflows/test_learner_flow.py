"""The learner branch: events joined in event time, learned with River, the challenger published to Redis."""

from __future__ import annotations

import copy
import math
import random
import signal
import statistics
import time
from pathlib import Path

import pytest
import redis

from dataflows.learner import FEEDBACK_TIMEOUT_MS, PUBLISH_EVERY_MS, LearnerState
from learner.bandit import DEFAULT_EXPLORATION, DEFAULT_TEMPERATURE, MIN_OBSERVATIONS
from symphony import clock, engine_client
from symphony.catalog import load_catalog, load_policy
from symphony.events import Decision, Feedback, Usage
from symphony.keys import CHALLENGER_KEY
from symphony.serving import ChallengerPolicy, context_of
from symphony.stream import publish, stream_name
from tests.engineutil import BASE_TS, SHARDS, Engine
from tests.logged_requests import logged_request

POLICY = load_policy(Path(__file__).parents[2] / "policies" / "champion.json", load_catalog())
GOOD, BAD = "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"
CANDIDATES = [GOOD, BAD]


def one_request(
    ts: int, arm: str, score: float | None, *, served: bool = True, policy: str = "champion"
) -> list[Decision | Usage | Feedback]:
    return logged_request(ts, arm, CANDIDATES, score, served=served, policy=policy)


def test_a_decision_is_learned_once_whatever_order_its_events_come_in() -> None:
    state = LearnerState()
    decision, usage, feedback = one_request(BASE_TS, GOOD, 1.0)
    state.add([feedback], POLICY)
    state.add([usage], POLICY)
    assert state.learned == 0 and len(state.pending) == 1
    state.add([decision], POLICY)
    assert state.learned == 1 and state.pending == {}
    assert state.estimates.observations("chat", GOOD) == 1


def test_failures_count_at_once_overrides_teach_nothing_and_silence_times_out() -> None:
    state = LearnerState()
    state.add(one_request(BASE_TS, BAD, None, served=False), POLICY)  # no attempt answered: utility 0
    assert state.estimates.mean("chat", BAD) == 0.0
    state.add(one_request(BASE_TS + 1000, GOOD, 1.0, policy="override"), POLICY)
    assert state.estimates.observations("chat", GOOD) == 0 and state.pending == {}
    state.add(one_request(BASE_TS + 2000, GOOD, None), POLICY)  # feedback never comes
    assert len(state.pending) == 1
    state.add(one_request(BASE_TS + 2000 + FEEDBACK_TIMEOUT_MS + 10, GOOD, 1.0), POLICY)
    assert state.timed_out == 1 and state.pending == {}


def test_the_challenger_prefers_per_context_the_arm_that_is_better_there() -> None:
    """GOOD answers short prompts well and long ones badly; BAD the other way round."""
    state = LearnerState()
    events: list[Decision | Usage | Feedback] = []
    for i in range(4 * MIN_OBSERVATIONS):
        arm = GOOD if i % 2 else BAD
        long_prompt = i % 4 >= 2
        good_here = (arm == GOOD) != long_prompt
        tokens = 5000.0 if long_prompt else 50.0
        events += logged_request(
            BASE_TS + i * 100, arm, CANDIDATES, 1.0 if good_here else 0.0, prompt_tokens=tokens
        )
    [published] = state.add(events, POLICY)
    challenger = ChallengerPolicy.from_json(published.payload)
    short = challenger.distribution("chat", (GOOD, BAD), context_of({"prompt_tokens": 50.0}))
    long = challenger.distribution("chat", (GOOD, BAD), context_of({"prompt_tokens": 5000.0}))
    assert short[0] > 0.9 and long[1] > 0.9, (short, long)
    overall = challenger.distribution("chat", (GOOD, BAD))  # no context: the task's table, a tie
    assert overall == pytest.approx((0.5, 0.5))


def test_a_snapshot_is_the_state_as_it_was() -> None:
    """Bytewax snapshots the state with deepcopy every epoch; later events must not reach the copy."""
    state = LearnerState()
    state.add(one_request(BASE_TS, GOOD, None), POLICY)  # waiting for its feedback
    snapshot = copy.deepcopy(state)
    state.add(one_request(BASE_TS + 1000, BAD, 1.0), POLICY)
    assert state.learned == 1 and len(state.done) == 1 and len(state.pending) == 1
    assert snapshot.learned == 0 and snapshot.done == {} and len(snapshot.pending) == 1
    assert snapshot.estimates.observations("chat", BAD) == 0


def test_a_challenger_is_published_at_most_once_per_period_of_event_time() -> None:
    state = LearnerState()
    first = state.add(one_request(BASE_TS, GOOD, 1.0), POLICY)
    assert [p.version for p in first] == [f"learned-{BASE_TS + 2}"]
    assert state.add(one_request(BASE_TS + PUBLISH_EVERY_MS - 100, GOOD, 1.0), POLICY) == []
    assert len(state.add(one_request(BASE_TS + PUBLISH_EVERY_MS + 10, GOOD, 1.0), POLICY)) == 1


def test_the_engine_learns_which_arm_is_better_and_publishes_it(
    engine: Engine, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEARNER_ENABLED", "true")
    engine.start()
    rng = random.Random(5)
    events: list[Decision | Usage | Feedback] = []
    scores: dict[str, list[float]] = {GOOD: [], BAD: []}
    for i in range(400):  # four minutes of event time
        arm = GOOD if i % 2 else BAD
        score = float(rng.random() < (0.9 if arm == GOOD else 0.3))
        scores[arm].append(score)
        events += one_request(BASE_TS + i * 600, arm, score)
    publish(redis_client, events, SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM feedback FINAL", 400, timeout=60)
    # The challenger goes out once per minute of event time, built from what was learned by then, and
    # which events that is depends on how the shards interleave. A request a publishing period after
    # the last, still waiting for its feedback (so it teaches nothing), makes one built from all 400.
    last = BASE_TS + 399 * 600 + PUBLISH_EVERY_MS + 1
    publish(redis_client, one_request(last, GOOD, None), SHARDS)
    challenger = wait_for_challenger(redis_client, newer_than=f"learned-{last - 1}")
    good, bad = challenger.distribution("chat", (GOOD, BAD))
    # The same costs and latencies for both arms, so utilities differ by quality's weight times scores.
    quality = POLICY.utility_weights("chat").quality
    gap = quality * (statistics.mean(scores[GOOD]) - statistics.mean(scores[BAD]))
    good_weight_share = 1 / (1 + math.exp(-gap / DEFAULT_TEMPERATURE))
    expected_good = DEFAULT_EXPLORATION / 2 + (1 - DEFAULT_EXPLORATION) * good_weight_share
    assert good == pytest.approx(expected_good) and bad == pytest.approx(1 - expected_good)
    assert good > 0.85 > bad


def wait_for_challenger(redis_client: redis.Redis, newer_than: str = "") -> ChallengerPolicy:
    deadline = clock.monotonic() + 30
    while clock.monotonic() < deadline:
        raw = redis_client.get(CHALLENGER_KEY)
        if raw is not None and (policy := ChallengerPolicy.from_json(raw)).version > newer_than:
            return policy
        time.sleep(0.1)
    raise AssertionError(f"no challenger newer than {newer_than!r} was published")


def test_what_the_learner_knows_survives_a_sigkill(
    engine: Engine, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEARNER_ENABLED", "true")
    engine.start()
    before: list[Decision | Usage | Feedback] = []
    for i in range(400):  # GOOD answers well, BAD badly
        arm = GOOD if i % 2 else BAD
        before += one_request(BASE_TS + i * 600, arm, 0.9 if arm == GOOD else 0.3)
    publish(redis_client, before, SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM feedback FINAL", 400, timeout=60)
    first = wait_for_challenger(redis_client)
    time.sleep(2.5)  # an epoch or two later, the learner's state is in a recovery snapshot
    assert engine.process is not None
    engine.process.send_signal(signal.SIGKILL)
    engine.process.wait()
    engine.process = None
    for shard in range(SHARDS):  # nothing to replay: what the learner knows must come from its snapshot
        redis_client.xtrim(stream_name(shard), maxlen=0)
    engine.start()
    # Sixty requests where the two arms swap: enough to flip an empty learner, not one that remembers.
    after: list[Decision | Usage | Feedback] = []
    for i in range(60):
        arm = GOOD if i % 2 else BAD
        after += one_request(BASE_TS + 400 * 600 + 120_000 + i * 1000, arm, 0.0 if arm == GOOD else 1.0)
    publish(redis_client, after, SHARDS)
    second = wait_for_challenger(redis_client, newer_than=first.version)
    good, bad = second.distribution("chat", (GOOD, BAD))
    assert good > bad, (good, bad)
