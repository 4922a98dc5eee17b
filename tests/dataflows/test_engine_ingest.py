"""The ingest flow's event parser: the same events and the same errors as ``symphony.events.parse_event``."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from dataflows.ingest import parse
from symphony.events import Feedback, new_id, parse_event
from symphony.stream import encode
from tests.engineutil import BASE_TS, pair


def payloads() -> list[bytes]:
    decision, usage = pair(7)
    feedback = Feedback(event_id=new_id(BASE_TS), ts=BASE_TS, decision_id="d", score=0.5, source="user")
    usage_json = usage.model_dump(mode="json")
    return [
        encode(decision),
        encode(usage),
        encode(feedback),
        orjson.dumps(usage_json, option=orjson.OPT_INDENT_2),  # spaced out: no fast path, same result
        # Nested objects carrying another type's marker: a wrong guess fails, the union decides.
        encode(usage.model_copy(update={"rate_limit": {"type": "decision"}})),
        encode(decision.model_copy(update={"overrides": {"type": "usage"}})),
        # A usage event that names itself a decision, and one with an unknown field.
        orjson.dumps(usage_json | {"type": "decision"}),
        orjson.dumps(usage_json | {"extra": 1}),
        orjson.dumps(usage_json | {"schema_version": 2}),
        b'{"type":"usage"',
        b'{"type":"invoice","ts":1}',
    ]


@pytest.mark.parametrize("payload", payloads())
def test_parse_is_parse_event(payload: bytes) -> None:
    try:
        expected = parse_event(payload)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as raised:
            parse(payload)
        assert raised.value.errors(include_url=False) == exc.errors(include_url=False)
        return
    assert parse(payload) == expected
    assert type(parse(payload)) is type(expected)
