"""How fast each simulated model answers: time to first token, then tokens per second.

All waits are in *event time* on the shared clock (``symphony.clock.sleep``), so a
simulated clock running at speed 60 makes every model sixty times faster in real
time while the latencies it reports in event time stay the same.

Defaults are small (tens of milliseconds to the first token, hundreds of tokens a
second) so tests and demos run quickly. Faults and rate limits are not modelled here.
"""

from __future__ import annotations

from dataclasses import dataclass

from symphony.clock import Clock, event_seconds_to_real, sleep

# Below this many real seconds a token's pacing delay is carried over to the next
# token instead of being slept: tiny sleeps cost more CPU than they are worth.
MIN_REAL_SLEEP_S = 0.004


@dataclass(frozen=True)
class Latency:
    ttft_s: float
    tokens_per_s: float

    def total_s(self, output_tokens: int) -> float:
        """Event-time seconds for a whole (non-streamed) answer of ``output_tokens``."""
        return self.ttft_s + output_tokens / self.tokens_per_s


PROVIDER_LATENCY: dict[str, Latency] = {
    "openai": Latency(ttft_s=0.030, tokens_per_s=400.0),
    "anthropic": Latency(ttft_s=0.040, tokens_per_s=300.0),
    "gemini": Latency(ttft_s=0.025, tokens_per_s=500.0),
    "perplexity": Latency(ttft_s=0.045, tokens_per_s=300.0),
    "venice": Latency(ttft_s=0.050, tokens_per_s=250.0),
    "grok": Latency(ttft_s=0.035, tokens_per_s=350.0),
    "deepseek": Latency(ttft_s=0.050, tokens_per_s=250.0),
}
MODEL_LATENCY: dict[tuple[str, str], Latency] = {
    ("openai", "gpt-4o"): Latency(ttft_s=0.040, tokens_per_s=250.0),
    ("anthropic", "claude-sonnet-4-5"): Latency(ttft_s=0.050, tokens_per_s=200.0),
}
DEFAULT_LATENCY = Latency(ttft_s=0.040, tokens_per_s=300.0)


def latency_for(provider: str, model: str) -> Latency:
    """The model's own entry, else its provider's, else the default."""
    return MODEL_LATENCY.get((provider, model)) or PROVIDER_LATENCY.get(provider, DEFAULT_LATENCY)


class Pacer:
    """Paces a stream of tokens at ``latency.tokens_per_s`` on ``clock``.

    ``await pacer.token()`` before each token after the first. Delays too short to
    sleep are carried over, so the average rate is exact without a sleep per token.
    """

    def __init__(self, clock: Clock, latency: Latency) -> None:
        self._clock = clock
        self._per_token_s = 1.0 / latency.tokens_per_s
        self._owed_s = 0.0

    async def token(self) -> None:
        self._owed_s += self._per_token_s
        if event_seconds_to_real(self._clock, self._owed_s) >= MIN_REAL_SLEEP_S:
            owed, self._owed_s = self._owed_s, 0.0
            await sleep(self._clock, owed)
