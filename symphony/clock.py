"""The one clock: the only module that reads the system time.

Two kinds of time are offered, and callers pick by meaning:

- ``now_ms()`` is *event time* (UTC epoch milliseconds). It is the real time, or a
  simulated time that starts at a chosen instant and runs ``speed`` times faster
  than the wall clock. The simulated clock is shared by every process through the
  Redis hash ``symphony:clock`` (``start_ms``, ``anchor_ms``, ``speed``), so a day of
  traffic can run in minutes and every process agrees on the hour.
- ``monotonic()`` is *elapsed real time* in seconds, for timeouts, pacing and
  latency measurements. It never runs faster than the wall clock, whatever the
  simulated speed, because sockets and CPUs do not.

``sleep()`` waits a span of *event time*: under a simulated clock at speed 60 a
one-minute sleep takes one real second. Latency models use it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import redis

from symphony.keys import CLOCK_KEY


def wall_ms() -> int:
    """Real wall-clock time in UTC epoch milliseconds."""
    return time.time_ns() // 1_000_000


def wall_seconds() -> float:
    """Real wall-clock time in UTC epoch seconds, to the clock's resolution (Prometheus exemplars)."""
    return time.time()


def monotonic() -> float:
    """Elapsed real time in seconds from an arbitrary origin."""
    return time.monotonic()


def utc_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def real_utcnow() -> datetime:
    """Real time as an aware datetime, for libraries that want one (Bytewax pacing)."""
    return utc_datetime(wall_ms())


class Clock(Protocol):
    @property
    def speed(self) -> float: ...

    def now_ms(self) -> int: ...


@dataclass(frozen=True)
class RealClock:
    speed: float = 1.0

    def now_ms(self) -> int:
        return wall_ms()


@dataclass(frozen=True)
class SimulatedClock:
    """Event time that started at ``start_ms`` when the wall clock read ``anchor_ms``."""

    start_ms: int
    anchor_ms: int
    speed: float

    def now_ms(self) -> int:
        return self.start_ms + int((wall_ms() - self.anchor_ms) * self.speed)


def event_seconds_to_real(clock: Clock, seconds: float) -> float:
    return seconds / clock.speed


async def sleep(clock: Clock, seconds: float) -> None:
    """Sleep ``seconds`` of event time."""
    await asyncio.sleep(event_seconds_to_real(clock, seconds))


def publish_clock(client: redis.Redis, *, start_ms: int | None = None, speed: float = 1.0) -> Clock:
    """Set the clock every process will share; ``speed == 1`` and no start means real time."""
    if speed <= 0:
        raise ValueError(f"clock speed must be > 0, got {speed}")
    if start_ms is None and speed == 1.0:
        client.delete(CLOCK_KEY)
        return RealClock()
    clock = SimulatedClock(
        start_ms=start_ms if start_ms is not None else wall_ms(), anchor_ms=wall_ms(), speed=speed
    )
    client.hset(CLOCK_KEY, mapping={"start_ms": clock.start_ms, "anchor_ms": clock.anchor_ms, "speed": speed})
    return clock


def shared_clock(client: redis.Redis) -> Clock:
    """The clock published in Redis, or real time when none is published."""
    fields: dict[bytes, bytes] = client.hgetall(CLOCK_KEY)  # type: ignore[assignment]
    if not fields:
        return RealClock()
    return SimulatedClock(
        start_ms=int(fields[b"start_ms"]),
        anchor_ms=int(fields[b"anchor_ms"]),
        speed=float(fields[b"speed"]),
    )
