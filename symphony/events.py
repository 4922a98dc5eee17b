"""The event contracts: ``decision``, ``usage`` and ``feedback``, versioned.

Events travel as JSON on the Redis stream and land one table each in ClickHouse.
Every event carries ``event_id`` (a ULID), ``ts`` (event time, UTC epoch ms),
``schema_version`` and ``type``. A consumer that meets a version it does not know
refuses the event (it goes to the dead-letter table) rather than guessing.
"""

from __future__ import annotations

import base64
import os
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION: Final = 1

PolicyKind = Literal["champion", "challenger", "override"]
# "cancelled": the client went away before the answer ended; not the provider's fault.
AttemptStatus = Literal["ok", "429", "5xx", "timeout", "error", "cancelled"]


# RFC 4648's base32 alphabet to Crockford's, which ULIDs are written in.
_TO_CROCKFORD: Final = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)
_PAD: Final = bytes(4)  # 32 zero bits: 160 bits make 32 characters, the first 6 of them padding alone


def new_id(ts_ms: int) -> str:
    """A ULID whose time part is the given event time (48 bits of ms, 80 random bits).

    Written with ``base64`` in C rather than a ULID library: a request makes five of them. Ids made
    in the same millisecond are unique (80 random bits) but not ordered among themselves.
    """
    raw = _PAD + ts_ms.to_bytes(6, "big") + os.urandom(10)
    return base64.b32encode(raw)[6:].translate(_TO_CROCKFORD).decode("ascii")


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=26, max_length=26)
    ts: int = Field(ge=0, description="event time, UTC epoch milliseconds")
    schema_version: Literal[1] = SCHEMA_VERSION


class Decision(Event):
    type: Literal["decision"] = "decision"
    decision_id: str
    request_id: str
    app: str
    task: str
    features: dict[str, float] = {}
    candidates: list[str] = Field(description="provider/model arms left after filtering")
    probabilities: list[float] = Field(description="serving probability of each candidate")
    provider: str
    model: str
    policy: PolicyKind
    policy_version: str
    propensity: float = Field(ge=0.0, le=1.0, description="probability of the chosen arm")
    overrides: dict[str, str] = {}
    quota_remaining: dict[str, float] = {}
    stream: bool = False
    trace_id: str = ""
    span_id: str = ""
    fallbacks: list[str] = Field(
        default=[],
        description="arms (provider/model) given up on before the one that served, in attempt order",
    )
    fallback_statuses: list[str] = Field(default=[], description="the attempt status of each of `fallbacks`")
    served_by: str = Field(default="", description="the arm that answered; empty when every attempt failed")


class Usage(Event):
    type: Literal["usage"] = "usage"
    decision_id: str
    app: str
    provider: str
    model: str
    attempt: int = Field(ge=1)
    status: AttemptStatus
    ttfb_ms: float = Field(ge=0.0)
    latency_ms: float = Field(ge=0.0)
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0.0)
    rate_limit: dict[str, str] = {}
    fallback_from: str = ""


class Feedback(Event):
    type: Literal["feedback"] = "feedback"
    decision_id: str
    score: float = Field(ge=0.0, le=1.0)
    source: str


AnyEvent = Annotated[Decision | Usage | Feedback, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Decision | Usage | Feedback] = TypeAdapter(AnyEvent)
EVENT_TYPES: dict[str, type[Event]] = {"decision": Decision, "usage": Usage, "feedback": Feedback}


def parse_event(raw: bytes | str) -> Decision | Usage | Feedback:
    """Validate one event from its JSON; raises ``pydantic.ValidationError``."""
    return EVENT_ADAPTER.validate_json(raw)
