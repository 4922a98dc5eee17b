"""The engine's publisher of the interactive forecast: learned from ClickHouse, kept in Redis.

The dispatcher runs beside the proxy and holds no ClickHouse credentials; the engine, which owns
ClickHouse, learns the forecast (``scheduler.history.learn_forecast``: mean interactive tokens
per provider per UTC hour of day over the past week) every ``interval_s`` of real time, at the
stack's clock (simulated or not), and writes it to ``symphony.keys.forecast_key`` per provider
with a TTL, so a forecast the engine stopped refreshing expires. The dispatcher reads it
(``read_forecast``); with none published it falls back to the engine's live burn rates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import cast

import redis
import redis.asyncio as aioredis

from scheduler.forecast import HourOfDayForecaster
from scheduler.history import Query, learn_forecast
from symphony.background_thread import BackgroundThread
from symphony.clock import shared_clock
from symphony.keys import forecast_key
from symphony.redis_client import sync_redis

log = logging.getLogger(__name__)

INTERVAL_S = 60.0
TTL_S = 3_600


def publish(client: redis.Redis, query: Query, providers: list[str], now_ms: int) -> str:
    """Learn the forecast at ``now_ms`` and write it; the note on what it was learned from."""
    learned = learn_forecast(query, now_ms, providers)
    with client.pipeline(transaction=False) as pipe:
        for provider in providers:
            fields = {str(h): str(learned.forecast.hourly.get((provider, h), 0.0)) for h in range(24)}
            fields |= {"note": learned.note, "as_of_ms": str(now_ms)}
            pipe.delete(forecast_key(provider))
            pipe.hset(forecast_key(provider), mapping=fields)  # type: ignore[arg-type]
            pipe.expire(forecast_key(provider), TTL_S)
        pipe.execute()
    return learned.note


async def read_forecast(client: aioredis.Redis, providers: list[str]) -> HourOfDayForecaster | None:
    """The forecast the engine published, or None when there is none (for any of ``providers``)."""
    hourly: dict[tuple[str, int], float] = {}
    for provider in providers:
        fields = cast(Mapping[bytes, bytes], await client.hgetall(forecast_key(provider)))
        if not fields:
            return None
        hourly.update({(provider, h): float(fields.get(str(h).encode(), b"0")) for h in range(24)})
    return HourOfDayForecaster(hourly)


class ForecastPublisher(BackgroundThread):
    thread_name = "forecast-publisher"

    def __init__(self, redis_url: str, query: Query, providers: list[str], interval_s: float = INTERVAL_S):
        super().__init__()
        self._redis_url, self._query, self._providers = redis_url, query, providers
        self._interval_s = interval_s

    def _run(self) -> None:
        client = sync_redis(self._redis_url, socket_timeout=5, socket_connect_timeout=2)
        try:
            while True:
                try:
                    publish(client, self._query, self._providers, shared_clock(client).now_ms())
                except Exception as exc:  # ClickHouse or Redis away: the last forecast holds until its TTL
                    log.warning("publishing the interactive forecast failed (%s)", exc)
                if self._stop.wait(self._interval_s):
                    return
        finally:
            client.close()
