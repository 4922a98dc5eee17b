"""The shared serving distribution: the challenger's per-task weights, its floor, and what it refuses."""

from __future__ import annotations

import pytest

from symphony.serving import ChallengerPolicy

ARMS = ("a/1", "b/2", "c/3")


def test_a_task_table_wins_over_the_common_weights_and_every_candidate_keeps_its_floor() -> None:
    policy = ChallengerPolicy.from_json(
        b'{"version": "v", "weights": {"a/1": 1},'
        b' "tasks": {"code": {"b/2": 1, "c/3": 3}}, "exploration": 0.3}'
    )
    # code: 0.7 * (0, 1/4, 3/4) + 0.1 each; chat falls back to the common weights: 0.7 * (1, 0, 0) + 0.1
    assert policy.distribution("code", ARMS) == pytest.approx((0.1, 0.275, 0.625))
    assert policy.distribution("chat", ARMS) == pytest.approx((0.8, 0.1, 0.1))
    assert min(policy.distribution("chat", ARMS)) == pytest.approx(0.3 / 3)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"weights": {}}', "string `version`"),
        (b'{"version": "v", "weights": {"a/1": -1}}', "`weights`"),
        (b'{"version": "v", "weights": {}, "tasks": {"code": {"a/1": "x"}}}', "`tasks.code`"),
        (b'{"version": "v", "weights": {}, "tasks": []}', "`tasks`"),
        (b'{"version": "v", "weights": {}, "exploration": 1.0}', "`exploration`"),
        (b"[1", "not JSON"),
    ],
)
def test_malformed_challengers_are_refused_with_the_field_named(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChallengerPolicy.from_json(raw)
