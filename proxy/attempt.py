"""One call of one arm, from request sent to last byte, ending in exactly one ``Usage`` event."""

from __future__ import annotations

from proxy.emitter import EventEmitter
from symphony.catalog import ModelPrice
from symphony.clock import Clock, monotonic
from symphony.events import AttemptStatus, Usage, new_id


class Attempt:
    """Times the call from its creation, just before the request is sent: ``ttfb_ms`` at
    the first body byte, ``latency_ms`` at the end (proxy overhead is not included).

    ``finish()`` emits the ``Usage`` event; later calls do nothing, so every path
    out of a request (success, upstream error, client gone) can call it.
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
        emitter: EventEmitter,
        attempt: int = 1,
    ) -> None:
        self.decision_id = decision_id
        self.app = app
        self.provider = provider
        self.model = model
        self.attempt = attempt
        self._price = price
        self._clock = clock
        self._emitter = emitter
        self._started = monotonic()
        self._first_byte: float | None = None
        self.rate_limit: dict[str, str] = {}
        self.finished = False

    def first_byte(self) -> None:
        if self._first_byte is None:
            self._first_byte = monotonic()

    def finish(self, status: AttemptStatus, input_tokens: int = 0, output_tokens: int = 0) -> None:
        if self.finished:
            return
        self.finished = True
        end = monotonic()
        first = self._first_byte if self._first_byte is not None else end
        ts = self._clock.now_ms()
        self._emitter.emit(
            Usage(
                event_id=new_id(ts),
                ts=ts,
                decision_id=self.decision_id,
                app=self.app,
                provider=self.provider,
                model=self.model,
                attempt=self.attempt,
                status=status,
                ttfb_ms=(first - self._started) * 1000.0,
                latency_ms=(end - self._started) * 1000.0,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=self._price.cost_usd(input_tokens, output_tokens),
                rate_limit=self.rate_limit,
            )
        )
