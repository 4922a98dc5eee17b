"""``POST /v1/feedback``: an app scores a decision's answer; the learner reads it as a ``feedback`` event.

Body ``{"decision_id": str, "score": 0..1, "source": str}`` (``source`` defaults to
``api``); the answer is 202, since the event is queued, not yet stored.

Only the app that made a decision may score it (``proxy.decision_ids``: the id carries a
tag bound to that app): a malformed id is a 400, an id this app was not given a 404, and
neither reaches the event stream. Scores may be sent again; the learner reads the latest.
"""

from __future__ import annotations

import orjson
from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from proxy import errors
from proxy.decision_ids import DecisionIds, well_formed
from proxy.edge.auth import caller_of
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
    def __init__(self, resources: ResourceSlot, decision_ids: DecisionIds) -> None:
        self._resources = resources
        self._decision_ids = decision_ids

    async def post(self, request: Request) -> Response:
        feedback = validate(FeedbackRequest, parse_object(await read_limited(request, FEEDBACK_MAX_BYTES)))
        self._check_owner(feedback.decision_id, caller_of(request).app)
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

    def _check_owner(self, decision_id: str, app: str) -> None:
        if not well_formed(decision_id):
            raise errors.ApiError(
                400,
                "`decision_id` must be the id from an answer's x-symphony-decision-id header "
                "(26 characters, '-', 16 characters).",
                param="decision_id",
                code="invalid_decision_id",
            )
        if not self._decision_ids.issued_to(decision_id, app):
            raise errors.ApiError(
                404,
                f"No decision {decision_id} was made for this app.",
                param="decision_id",
                code="decision_not_found",
            )
