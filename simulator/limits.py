"""Per-provider rate limits: requests and tokens per minute, in fixed 60 s windows of event time.

A request is admitted if its provider's current window has a request and the
request's tokens (prompt plus answer) left; admitting it spends them. A refused
request spends nothing and learns when the window starts afresh (``retry-after``).
Every answer reports the window through the provider's rate-limit headers, so the
remaining counts a client sees really decrease.

Defaults are generous (no test or benchmark meets them); ``set`` lowers a
provider's limits at runtime (``PUT /admin/limits/{provider}``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from simulator.wire import LimitSnapshot
from symphony.clock import Clock

WINDOW_MS = 60_000


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: int = Field(default=1_000_000, ge=1)
    tpm: int = Field(default=1_000_000_000, ge=1)


class RateLimited(Exception):
    def __init__(self, snapshot: LimitSnapshot, what: str) -> None:
        super().__init__(f"rate limit reached for {what} per minute")
        self.snapshot = snapshot
        self.what = what
        self.model = ""  # the model asked for, when the caller knows it

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.snapshot.reset_in_ms / 1000))


@dataclass
class _Window:
    start_ms: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class RateLimiter:
    def __init__(self, clock: Clock, providers: list[str]) -> None:
        self._clock = clock
        self._limits = {provider: Limits() for provider in providers}
        self._windows = {provider: _Window() for provider in providers}

    def limits(self) -> dict[str, Limits]:
        return dict(self._limits)

    def set(self, provider: str, limits: Limits) -> None:
        self._limits[provider] = limits

    def reset(self) -> None:
        """Default limits and fresh windows for every provider."""
        for provider in self._limits:
            self._limits[provider] = Limits()
            self._windows[provider] = _Window()

    def peek(self, provider: str) -> LimitSnapshot:
        """The window as it stands, spending nothing (for answers refused before admission)."""
        return self._snapshot(provider, self._window(provider))

    def admit(self, provider: str, input_tokens: int, output_tokens: int) -> LimitSnapshot:
        """Spend one request and its tokens, or raise ``RateLimited``."""
        window, limits = self._window(provider), self._limits[provider]
        if window.requests + 1 > limits.rpm:
            raise RateLimited(self._snapshot(provider, window), "requests")
        if window.tokens + input_tokens + output_tokens > limits.tpm:
            raise RateLimited(self._snapshot(provider, window), "tokens")
        window.requests += 1
        window.input_tokens += input_tokens
        window.output_tokens += output_tokens
        return self._snapshot(provider, window)

    def _window(self, provider: str) -> _Window:
        now_ms = self._clock.now_ms()
        start_ms = now_ms - now_ms % WINDOW_MS
        window = self._windows[provider]
        if window.start_ms != start_ms:
            window = self._windows[provider] = _Window(start_ms=start_ms)
        return window

    def _snapshot(self, provider: str, window: _Window) -> LimitSnapshot:
        limits = self._limits[provider]
        return LimitSnapshot(
            requests_limit=limits.rpm,
            requests_remaining=max(0, limits.rpm - window.requests),
            tokens_limit=limits.tpm,
            tokens_remaining=max(0, limits.tpm - window.tokens),
            input_tokens_remaining=max(0, limits.tpm - window.input_tokens),
            output_tokens_remaining=max(0, limits.tpm - window.output_tokens),
            reset_at_ms=window.start_ms + WINDOW_MS,
            now_ms=self._clock.now_ms(),
        )
