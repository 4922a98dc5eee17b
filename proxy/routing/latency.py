"""What this process has seen of each arm's speed: moving averages of successful attempts.

Two figures per arm (``provider/model``): the whole answer's latency, which the
``latency_budget_ms`` constraint is checked against, and the time per output token,
which sizes how long a non-streamed answer may take before the proxy gives up on
it (its first byte is the whole answer). An arm not yet seen has no latency
estimate, so it stays a candidate and gets measured.
"""

from __future__ import annotations

from dataclasses import dataclass

# Weight of the newest observation in the moving averages.
ALPHA = 0.2
# Per-token time assumed before an arm has answered (50 tokens/s, slow for a hosted model).
PRIOR_MS_PER_TOKEN = 20.0


@dataclass(slots=True)
class _Arm:
    latency_ms: float
    ms_per_token: float


class LatencyEstimates:
    def __init__(self, alpha: float = ALPHA) -> None:
        self._alpha = alpha
        self._arms: dict[str, _Arm] = {}

    def observe(
        self, arm: str, *, ttfb_ms: float, latency_ms: float, output_tokens: int, stream: bool
    ) -> None:
        """One successful attempt. For a stream, tokens are timed after the first byte."""
        generating_ms = latency_ms - ttfb_ms if stream else latency_ms
        per_token = generating_ms / output_tokens if output_tokens > 0 else None
        seen = self._arms.get(arm)
        if seen is None:
            self._arms[arm] = _Arm(latency_ms, per_token if per_token is not None else PRIOR_MS_PER_TOKEN)
            return
        a = self._alpha
        seen.latency_ms += a * (latency_ms - seen.latency_ms)
        if per_token is not None:
            seen.ms_per_token += a * (per_token - seen.ms_per_token)

    def latency_ms(self, arm: str) -> float | None:
        seen = self._arms.get(arm)
        return seen.latency_ms if seen is not None else None

    def ms_per_token(self, arm: str) -> float:
        seen = self._arms.get(arm)
        return seen.ms_per_token if seen is not None else PRIOR_MS_PER_TOKEN
