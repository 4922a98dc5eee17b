"""The proxy in front of the real simulator, in-process, for the proxy's tests.

``ProxyStack`` runs the simulator and the proxy on uvicorn threads, with the
bundled Redis the test got from ``redis_server``, and issues an app key
(``stack.key``, app ``tests``) that ``stack.auth``, ``stack.openai()`` and
``stack.anthropic()`` send. Provider keys given as ``keys`` travel to the simulator,
which then accepts only those (``sim_keys`` to make it expect others). More
proxies on the same Redis and simulator: ``stack.add_replica()``. The simulator is wrapped in
``CountingApp``, which counts what the simulator answered (per provider and
status), so a test can hold the proxy's usage events against what really happened
upstream, and records the ``traceparent`` each request carried. ``events()`` stops the
proxy, which flushes its queue, and reads every shard of the event stream.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import anthropic
import httpx
import openai
import redis
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.app import create_app
from simulator import BackgroundServer
from simulator import create_app as create_sim_app
from symphony.app_keys import AppKey, create_key
from symphony.catalog import Catalog, load_catalog
from symphony.clock import RealClock, wall_ms
from symphony.events import Decision, Feedback, Usage, parse_event
from symphony.health import answers_as
from symphony.keys import STREAM_PREFIX
from symphony.redis_server import REDIS_ENV, RedisServer, free_port
from symphony.settings import Settings
from tests.engineutil import REPO

CATALOG = load_catalog()
SHARDS = 4


class CountingApp:
    """Counts the simulator's generation answers by (provider, status); hung requests count when they end.

    ``traceparents`` records the W3C ``traceparent`` each generation request carried ("" if none), and
    ``bodies`` each one's body, as it arrived (a request cut off early holds what came).
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.answers: Counter[tuple[str, int]] = Counter()
        self.traceparents: list[str] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] != "http" or path.startswith("/admin") or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        provider = path.strip("/").split("/", 1)[0]
        headers = dict(scope["headers"])
        self.traceparents.append(headers.get(b"traceparent", b"").decode())
        status = 0  # the client went away before any answer
        body = bytearray()
        self.bodies.append(b"")
        index = len(self.bodies) - 1

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
                self.bodies[index] = bytes(body)
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, recording_receive, counting_send)
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


def issue_key(client: redis.Redis, app: str = "tests", **limits: Any) -> str:
    """A new app key for ``app`` with ``limits`` (``AppKey`` fields: budgets, rpm, tpm, models)."""
    key, _ = create_key(client, AppKey(prefix="", app=app, created_ms=wall_ms(), **limits))
    return key


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


class ProxyStack:
    """Simulator + proxy over the given Redis; settings overrides go to the proxy.

    ``keys``: provider keys the proxy sends (to the simulator); ``sim_keys`` (default
    ``keys``): the only keys the simulator accepts. ``app`` and ``limits``: the
    app key the stack issues. ``environ``: where the proxy reads the other providers' keys.
    """

    def __init__(
        self,
        redis_server: RedisServer,
        *,
        seed: int = 3,
        catalog: Catalog = CATALOG,
        keys: Mapping[str, str] | None = None,
        sim_keys: Mapping[str, str] | None = None,
        app: str = "tests",
        limits: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> None:
        self.catalog = catalog
        self.environ = environ  # where the proxy reads the keys of the catalog's providers not in ``keys``
        self.provider_keys = {name: SecretStr(value) for name, value in (keys or {}).items()}
        expected = sim_keys if sim_keys is not None else keys
        self.sim_app = CountingApp(create_sim_app(RealClock(), catalog, seed=seed, keys=expected))
        self.sim = BackgroundServer(self.sim_app)
        # No proxy_port: the app never reads it (only `proxy.app.run` binds by it), and the proxy
        # below binds a port the OS picks, which no pick made beforehand could be sure of.
        self.settings = Settings(
            redis_url=redis_server.url,
            sim_url=self.sim.url,
            event_shards=SHARDS,
            simulated_providers="all",
            decision_key=SecretStr(
                secrets.token_urlsafe(32)
            ),  # one for every replica, as `symphony up` makes
            **settings,
        )
        self.proxy = BackgroundServer(self._proxy_app())
        self.replicas: list[BackgroundServer] = []
        self.redis = redis.Redis.from_url(redis_server.url)
        self.key = issue_key(self.redis, app, **(limits or {}))

    def _proxy_app(self) -> ASGIApp:
        return create_app(self.settings, keys=self.provider_keys, catalog=self.catalog, environ=self.environ)

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
            for replica in self.replicas:
                replica.stop()
            self.proxy.stop()
        finally:
            self.sim.stop()
            self.redis.close()

    def add_replica(self) -> BackgroundServer:
        """Another proxy on the same Redis and simulator (stopped with the stack)."""
        replica = BackgroundServer(self._proxy_app()).start()
        self.replicas.append(replica)
        return replica

    def issue_key(self, app: str = "tests", **limits: Any) -> str:
        return issue_key(self.redis, app, **limits)

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def base_url(self) -> str:
        return f"{self.proxy.url}/v1"

    @property
    def auth(self) -> dict[str, str]:
        """The headers that authenticate as the stack's app."""
        return bearer(self.key)

    def openai(self, key: str | None = None, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key or self.key, max_retries=0, **options)

    def anthropic(self, key: str | None = None, **options: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key or self.key, max_retries=0, **options)

    def faults(self, provider: str, **spec: float) -> None:
        httpx.put(f"{self.sim.url}/admin/faults/{provider}", json=spec).raise_for_status()

    def events(self) -> Events:
        """Stop the proxy (flushing its queue), then read every shard of the stream."""
        for replica in self.replicas:
            replica.stop()
        self.proxy.stop()
        return read_events(self.redis)


def start_proxy(
    redis_url: str,
    sim_url: str,
    var_dir: Path,
    index: int,
    workers: int = 1,
    *,
    decision_key: str,
    **env: str,
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m cli proxy`` as its own process (``workers`` of them on its port), with no provider key;
    ``env``: more settings (``QUOTA_FAIL_MODE="closed"``). Its log is ``var_dir/proxy-<index>.log``."""
    port = free_port()
    log = var_dir / f"proxy-{index}.log"
    env = {
        **REDIS_ENV,
        "PYTHONPATH": str(REPO),
        "REDIS_URL": redis_url,
        "SIM_URL": sim_url,
        "SIMULATED_PROVIDERS": "all",
        "EVENT_SHARDS": str(SHARDS),
        "PROXY_PORT": str(port),
        "VAR_DIR": str(var_dir),
        "PROXY_WORKERS": str(workers),
        "DECISION_KEY": decision_key,  # the same for every process, as `symphony up` gives them
        **env,
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "proxy"], cwd=REPO, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"proxy {index} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        if answers_as(url, "proxy", timeout=1):  # not another process on the port it was told
            return process, url
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"proxy {index} did not answer /health:\n{log.read_text()[-3000:]}")
