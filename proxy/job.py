"""One request to route, in canonical form, whatever API it came in through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.candidates import NO_CONSTRAINTS, Constraints, Pin


@dataclass(frozen=True, slots=True)
class Job:
    body: dict[str, Any]  # an OpenAI chat-completions request; each attempt sets its own model
    app: str
    task: str
    stream: bool
    include_usage: bool = False  # a stream ends with the usage chunk only when the client asked
    pin: Pin | None = None
    constraints: Constraints = NO_CONSTRAINTS
    overrides: dict[str, str] = field(default_factory=dict)  # as the decision event logs them
