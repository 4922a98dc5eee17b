"""``POST /v1/feedback``: an app scores a decision's answer; the learner reads it as a ``feedback`` event.

Body ``{"decision_id": str, "score": 0..1, "source": str}`` (``source`` defaults to
``api``); the answer is 202, since the event is queued, not yet stored.
"""

from __future__ import annotations

import orjson
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from proxy.edge.body import parse_object, read_limited, validate
from proxy.resources import ResourceSlot
from proxy.schemas import ClosedModel
from symphony.events import Feedback, new_id

FEEDBACK_MAX_BYTES = 16 << 10


class FeedbackRequest(ClosedModel):
    decision_id: str = Field(min_length=1, max_length=64)
    score: float = Field(ge=0.0, le=1.0)
    source: str = Field(default="api", min_length=1, max_length=64)


class FeedbackApi:
    def __init__(self, resources: ResourceSlot) -> None:
        self._resources = resources

    async def post(self, request: Request) -> Response:
        feedback = validate(FeedbackRequest, parse_object(await read_limited(request, FEEDBACK_MAX_BYTES)))
        resources = self._resources.get()
        ts = resources.clock.now_ms()
        resources.emitter.emit(
            Feedback(
                event_id=new_id(ts),
                ts=ts,
                decision_id=feedback.decision_id,
                score=feedback.score,
                source=feedback.source,
            )
        )
        body = orjson.dumps({"status": "accepted", "decision_id": feedback.decision_id})
        return Response(body, status_code=202, media_type="application/json")
