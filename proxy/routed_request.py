"""One request to route, in canonical form, whatever API it came in through.

Its token estimate (``TokenEstimate``: prompt and answer size) is read from the body once,
when the request is made, and carried to every step that needs it (the cost constraint, each
attempt's quota reservation and time limit, the decision's features); each arm prices it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.routing.candidates import NO_CONSTRAINTS, Constraints, Pin, TokenEstimate
from symphony.app_keys import AppKey


@dataclass(frozen=True, slots=True)
class RoutedRequest:
    body: dict[str, Any]  # an OpenAI chat-completions request; each attempt sets its own model
    app: str  # the caller's app, from its key
    task: str
    stream: bool
    include_usage: bool = False  # a stream ends with the usage chunk only when the client asked
    pin: Pin | None = None
    constraints: Constraints = NO_CONSTRAINTS
    overrides: dict[str, str] = field(default_factory=dict)  # as the decision event logs them
    key: AppKey | None = None  # the caller's key: its budgets, limits and allowed models (None: auth off)
    estimate: TokenEstimate = field(init=False)  # read from ``body`` once

    def __post_init__(self) -> None:
        object.__setattr__(self, "estimate", TokenEstimate.of(self.body))  # frozen: set once, here

    def features(self) -> dict[str, float]:
        """What the decision logs of the request; its routing context is read from these
        (``symphony.serving.context_of``), by the proxy now and by the learner later."""
        messages = self.body.get("messages")
        return {
            "messages": float(len(messages) if isinstance(messages, list) else 0),
            "prompt_tokens": float(self.estimate.prompt_tokens),
        }
