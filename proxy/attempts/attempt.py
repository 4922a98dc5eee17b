"""One call of one arm, from request sent to last byte, described by exactly one ``Usage`` event."""

from __future__ import annotations

from symphony.catalog import ModelPrice
from symphony.clock import Clock, monotonic
from symphony.events import AttemptStatus, Usage, new_id


class Attempt:
    """Times the call from its creation, just before the request is sent: ``ttfb_ms`` at
    the first body byte, ``latency_ms`` at the end (proxy overhead is not included).

    ``finish()`` returns the ``Usage`` event the first time and ``None`` after, so
    every path out of a request (success, upstream error, client gone) can call it
    and the event is emitted once.
    """

    def __init__(
        self,
        *,
        decision_id: str,
        app: str,
        provider: str,
        model: str,
        price: ModelPrice,
        clock: Clock,
        number: int = 1,
        fallback_from: str = "",
    ) -> None:
        self.decision_id = decision_id
        self.app = app
        self.provider = provider
        self.model = model
        self.number = number
        self.fallback_from = fallback_from
        self._price = price
        self._clock = clock
        self.started = monotonic()
        self._first_byte: float | None = None
        self.rate_limit: dict[str, str] = {}
        self.finished = False

    @property
    def arm(self) -> str:
        return f"{self.provider}/{self.model}"

    def first_byte(self) -> None:
        if self._first_byte is None:
            self._first_byte = monotonic()

    def finish(self, status: AttemptStatus, input_tokens: int = 0, output_tokens: int = 0) -> Usage | None:
        if self.finished:
            return None
        self.finished = True
        end = monotonic()
        first = self._first_byte if self._first_byte is not None else end
        ts = self._clock.now_ms()
        return Usage(
            event_id=new_id(ts),
            ts=ts,
            decision_id=self.decision_id,
            app=self.app,
            provider=self.provider,
            model=self.model,
            attempt=self.number,
            status=status,
            ttfb_ms=(first - self.started) * 1000.0,
            latency_ms=(end - self.started) * 1000.0,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=self._price.cost_usd(input_tokens, output_tokens),
            rate_limit=self.rate_limit,
            fallback_from=self.fallback_from,
        )
