"""The engine side of the proxy's exchange ring: a decision's entries read back, damaged ones skipped."""

from __future__ import annotations

import json

import redis

from sinks.evidence.capture import read_exchanges
from symphony.keys import EXCHANGES_KEY


def entry(decision_id: str, attempt: int, at_ms: int) -> str:
    return json.dumps(
        {
            "decision_id": decision_id,
            "attempt": attempt,
            "at_ms": at_ms,
            "method": "POST",
            "url": "http://sim/grok/v1/chat/completions",
            "request_headers": {"Authorization": "[REDACTED:header]"},
            "request_body": '{"model":"grok-3-mini"}',
            "status": 504 if attempt == 1 else 200,
            "response_headers": {"x-ratelimit-remaining-requests": "9"},
            "response_body": "{}",
        }
    )


def test_a_decisions_exchanges_one_per_attempt(redis_client: redis.Redis) -> None:
    redis_client.rpush(
        EXCHANGES_KEY,
        entry("d1", 1, 10),
        entry("d2", 1, 11),
        "not json",
        json.dumps({"decision_id": "d1"}),
        entry("d1", 2, 20),
        entry("d1", 2, 20),  # a retried push: one exchange
    )
    found = read_exchanges(redis_client, "d1")
    assert [(e.attempt, e.status, e.at_ms) for e in found] == [(1, 504, 10), (2, 200, 20)]
    assert found[0].request_headers == {"Authorization": "[REDACTED:header]"}
    assert found[0].request_body == b'{"model":"grok-3-mini"}'
    assert read_exchanges(redis_client, "d3") == []
