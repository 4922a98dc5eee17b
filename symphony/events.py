"""The event contracts: ``decision``, ``usage``, ``feedback`` and ``promotion``, versioned.

Events travel as JSON on the Redis stream and land one table each in ClickHouse.
Every event carries ``event_id`` (a ULID), ``ts`` (event time, UTC epoch ms),
``schema_version`` and ``type``. A consumer that meets a version it does not know
refuses the event (it goes to the dead-letter table) rather than guessing.
"""

from __future__ import annotations

import functools
import os
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION: Final = 1

PolicyKind = Literal["champion", "challenger", "override"]
# "cancelled": the client went away before the answer ended; not the provider's fault.
AttemptStatus = Literal["ok", "429", "5xx", "timeout", "error", "cancelled"]


_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # the ULID alphabet
_PAIRS: Final = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)  # 10 bits -> two characters


def new_id(ts_ms: int) -> str:
    """A ULID whose time part is the given event time (48 bits of ms, 80 random bits).

    Written by table rather than with a ULID library (or ``base64``, whose base32 is Python): a
    request makes five, most in the same millisecond, so the time's ten characters are kept for
    the last few milliseconds. Ids made in the same millisecond are unique (80 random bits from
    ``os.urandom``) but not ordered among themselves.
    """
    try:
        r = _RANDOM_80.pop()
    except IndexError:
        r = _refill()
    return ulid_text(ts_ms, r)


def ulid_text(ts_ms: int, r: int) -> str:
    """The ULID of event time ``ts_ms`` and random part ``r`` (80 bits): its last 16 characters are
    eight 10-bit pairs."""
    return (
        _time_part(ts_ms)
        + _PAIRS[r >> 70]
        + _PAIRS[r >> 60 & 0x3FF]
        + _PAIRS[r >> 50 & 0x3FF]
        + _PAIRS[r >> 40 & 0x3FF]
        + _PAIRS[r >> 30 & 0x3FF]
        + _PAIRS[r >> 20 & 0x3FF]
        + _PAIRS[r >> 10 & 0x3FF]
        + _PAIRS[r & 0x3FF]
    )


# Random parts drawn from os.urandom 256 at a time: one system call (getrandom) an id was 1.5 % of
# the proxy's busy samples at 500 req/s under py-spy. Emptied in a forked child, which must not repeat its
# parent's.
_RANDOM_80: list[int] = []
_DRAWN_AT_ONCE = 256


def _refill() -> int:
    pool = os.urandom(10 * _DRAWN_AT_ONCE)
    _RANDOM_80.extend(int.from_bytes(pool[at : at + 10], "big") for at in range(10, len(pool), 10))
    return int.from_bytes(pool[:10], "big")


os.register_at_fork(after_in_child=_RANDOM_80.clear)


@functools.lru_cache(maxsize=8)
def _time_part(ts_ms: int) -> str:
    """The first 10 characters: 48 bits of milliseconds, the first character holding the top 3."""
    return "".join([_CROCKFORD[ts_ms >> shift & 0x1F] for shift in range(45, -1, -5)])


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


class Promotion(Event):
    """A promotion ``symphony learner-promote`` made: the new champion's branch, its pull request, the diff.

    Not traffic: the learner and SLO branches never see it; it lands in ClickHouse ``promotions``,
    where the console reads the history.
    """

    type: Literal["promotion"] = "promotion"
    version: str = Field(description="the proposed champion's version")
    champion_version: str = Field(description="the champion it would replace")
    challenger_version: str = Field(description="the learner's challenger it was built from")
    candidate: bool = Field(description="the learner's verdict: the challenger is a promotion candidate")
    uplift_low: float | None = Field(
        default=None, description="the uplift's lower bound on the latest 24h window (all tasks)"
    )
    forced_over: list[str] = Field(default=[], description="the blockers --force went past")
    base: str
    branch: str
    commit: str
    pull_request_url: str = Field(default="", description="empty when no pull request was opened")
    pull_request_number: int = Field(default=0, ge=0)
    diff: str = Field(description="the Markdown policy diff: the pull request's body")


AnyEvent = Annotated[Decision | Usage | Feedback | Promotion, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Decision | Usage | Feedback | Promotion] = TypeAdapter(AnyEvent)
EVENT_TYPES: dict[str, type[Event]] = {
    "decision": Decision,
    "usage": Usage,
    "feedback": Feedback,
    "promotion": Promotion,
}


def parse_event(raw: bytes | str) -> Decision | Usage | Feedback | Promotion:
    """Validate one event from its JSON; raises ``pydantic.ValidationError``."""
    return EVENT_ADAPTER.validate_json(raw)
