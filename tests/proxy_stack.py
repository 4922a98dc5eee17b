"""The proxy in front of the real simulator, in-process, for the proxy's tests.

``ProxyStack`` runs the simulator and the proxy on uvicorn threads, with the
bundled Redis the test got from ``redis_server``. The simulator is wrapped in
``CountingApp``, which only counts what the simulator answered (per provider and
status), so a test can hold the proxy's usage events against what really happened
upstream. ``events()`` stops the proxy, which flushes its queue, and reads every
shard of the event stream.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import httpx
import redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.app import create_app
from symphony.catalog import Catalog, load_catalog
from symphony.clock import RealClock
from symphony.events import Decision, Feedback, Usage, parse_event
from symphony.redis_server import RedisServer, free_port
from symphony.settings import Settings
from symphony.sim import BackgroundServer
from symphony.sim import create_app as create_sim_app
from symphony.stream import STREAM_PREFIX

CATALOG = load_catalog()
SHARDS = 4


class CountingApp:
    """Counts the simulator's generation answers by (provider, status); hung requests count when they end."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.answers: Counter[tuple[str, int]] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or path.startswith("/admin") or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        provider = path.strip("/").split("/", 1)[0]
        status = 0  # the client went away before any answer

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, counting_send)
        finally:
            self.answers[(provider, status)] += 1

    def total(self) -> int:
        return sum(self.answers.values())


@dataclass
class Events:
    decisions: list[Decision] = field(default_factory=list)
    usages: list[Usage] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)


def read_events(client: redis.Redis) -> Events:
    events = Events()
    for key in client.scan_iter(f"{STREAM_PREFIX}*"):
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(key))
        for _id, fields in entries:
            event = parse_event(fields[b"e"])
            if isinstance(event, Decision):
                events.decisions.append(event)
            elif isinstance(event, Usage):
                events.usages.append(event)
            else:
                events.feedback.append(event)
    return events


class ProxyStack:
    """Simulator + proxy over the given Redis; settings overrides go to the proxy."""

    def __init__(
        self, redis_server: RedisServer, *, seed: int = 3, catalog: Catalog = CATALOG, **settings: Any
    ) -> None:
        self.sim_app = CountingApp(create_sim_app(RealClock(), catalog, seed=seed))
        self.sim = BackgroundServer(self.sim_app)
        port = free_port()
        self.settings = Settings(
            redis_url=redis_server.url,
            sim_url=self.sim.url,
            proxy_port=port,
            event_shards=SHARDS,
            simulated_providers="all",
            **settings,
        )
        self.proxy = BackgroundServer(create_app(self.settings, catalog=catalog), port=port)
        self.redis = redis.Redis.from_url(redis_server.url)

    def __enter__(self) -> ProxyStack:
        self.sim.start()
        try:
            self.proxy.start()
        except BaseException:
            self.sim.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.proxy.stop()
        finally:
            self.sim.stop()
            self.redis.close()

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def base_url(self) -> str:
        return f"{self.proxy.url}/v1"

    def faults(self, provider: str, **spec: float) -> None:
        httpx.put(f"{self.sim.url}/admin/faults/{provider}", json=spec).raise_for_status()

    def events(self) -> Events:
        """Stop the proxy (flushing its queue), then read every shard of the stream."""
        self.proxy.stop()
        return read_events(self.redis)
