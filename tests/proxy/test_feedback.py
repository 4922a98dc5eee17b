"""`POST /v1/feedback` takes scores the learner can trust: from the app that made the decision, for a
decision the proxy made; anything else is refused with a 4xx and never reaches the event stream."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from proxy.decision_ids import DecisionIds
from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack, bearer

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[ProxyStack]:
    with ProxyStack(redis_server) as running:
        yield running


def decide(url: str, key: str) -> str:
    """A served request's decision id, as an app reads it from the answer."""
    answer = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "auto", "messages": MESSAGES, "max_tokens": 4},
        headers=bearer(key),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.headers["x-symphony-decision-id"]


def score(url: str, key: str, decision_id: object, value: float = 0.9) -> httpx.Response:
    body = {"decision_id": decision_id, "score": value, "source": "thumbs"}
    return httpx.post(f"{url}/v1/feedback", json=body, headers=bearer(key), timeout=30)


def test_the_deciding_app_scores_its_decision_on_any_replica(stack: ProxyStack) -> None:
    replica = stack.add_replica()
    decision_id = decide(stack.url, stack.key)
    answer = score(replica.url, stack.key, decision_id)  # another replica: the same key verifies it
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"status": "accepted", "decision_id": decision_id}
    [feedback] = stack.events().feedback
    assert (feedback.decision_id, feedback.score, feedback.source) == (decision_id, 0.9, "thumbs")


def test_another_apps_decision_and_an_unknown_one_are_the_same_404(stack: ProxyStack) -> None:
    other_key = stack.issue_key("other-app")
    decision_id = decide(stack.url, stack.key)
    forged = DecisionIds(b"not the proxy's key, 32 bytes!!").issue(1_764_547_200_000, "tests")
    answers = [score(stack.url, other_key, decision_id), score(stack.url, stack.key, forged)]
    for answer, which in zip(answers, (decision_id, forged), strict=True):
        assert answer.status_code == 404, answer.text
        error = answer.json()["error"]
        assert error["param"] == "decision_id" and error["code"] == "decision_not_found"
        assert error["message"] == f"No decision {which} was made for this app."
    assert stack.events().feedback == []


@pytest.mark.parametrize(
    "decision_id",
    ["hello", "01JD", "01JABCDEFGHJKMNPQRSTVWXYZ0", "01JABCDEFGHJKMNPQRSTVWXYZ0-AAAAAAAAAAAAAAAA", 7, None],
)
def test_a_malformed_decision_id_is_a_400_naming_the_field(stack: ProxyStack, decision_id: object) -> None:
    answer = score(stack.url, stack.key, decision_id)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "decision_id"
    assert "x-symphony-decision-id" in error["message"] or "string" in error["message"]
    assert stack.events().feedback == []
