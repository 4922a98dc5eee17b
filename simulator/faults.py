"""Faults injected per provider, set at runtime (``PUT /admin/faults/{provider}``).

- ``rate_429``: share of requests answered 429 with ``retry-after`` (as if a limit we
  do not model was hit);
- ``rate_5xx``: share answered with one of the provider's server errors (500/502/503,
  Anthropic's 529 overloaded, Gemini's 503 UNAVAILABLE);
- ``hang_rate``: share accepted and never answered, until the client gives up;
- ``slow_ttft_ms``: event-time milliseconds added before every answer's first byte.

Which request gets which fault is drawn from its own seeded random stream, so a
seeded simulator injects the same faults into the same sequence of requests, and
drawing faults never changes what the models say.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Fault = Literal["hang", "429", "5xx"]
FAULT_RETRY_AFTER_S = 1


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_429: float = Field(default=0.0, ge=0.0, le=1.0)
    rate_5xx: float = Field(default=0.0, ge=0.0, le=1.0)
    hang_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    slow_ttft_ms: int = Field(default=0, ge=0, le=600_000)

    @model_validator(mode="after")
    def _shares_fit(self) -> FaultSpec:
        if self.rate_429 + self.rate_5xx + self.hang_rate > 1.0:
            raise ValueError("rate_429 + rate_5xx + hang_rate must not exceed 1")
        return self

    @property
    def any_share(self) -> bool:
        return self.rate_429 + self.rate_5xx + self.hang_rate > 0


class Faults:
    def __init__(self, providers: list[str], seed: int | None) -> None:
        self._providers = providers
        self._rng = random.Random(None if seed is None else f"faults-{seed}")
        self._specs = {provider: FaultSpec() for provider in providers}

    def specs(self) -> dict[str, FaultSpec]:
        return dict(self._specs)

    def spec(self, provider: str) -> FaultSpec:
        return self._specs[provider]

    def set(self, provider: str, spec: FaultSpec) -> None:
        self._specs[provider] = spec

    def reset(self) -> None:
        self._specs = {provider: FaultSpec() for provider in self._providers}

    def draw(self, provider: str) -> Fault | None:
        """The fault this request meets, if any (no draw at all for a fault-free provider)."""
        spec = self._specs[provider]
        if not spec.any_share:
            return None
        u = self._rng.random()
        if u < spec.hang_rate:
            return "hang"
        if u < spec.hang_rate + spec.rate_429:
            return "429"
        if u < spec.hang_rate + spec.rate_429 + spec.rate_5xx:
            return "5xx"
        return None

    def server_status(self, statuses: tuple[int, ...]) -> int:
        return self._rng.choice(statuses)
