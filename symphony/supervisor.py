"""``symphony up``: start Redis (if needed), the simulator, the engine and the proxy.

Each part runs as its own process (``python -m symphony <part>``) with its log in
``var/logs/<part>.log``. The stack stops in dependency order: the proxy first (it
flushes its queued events to the stream), then the simulator, then the engine,
then a Redis server the stack started itself. Children get SIGTERM when the
supervisor dies, however it dies, so nothing is left running.

Before the proxy starts, the stack makes sure a development key exists (app
``dev``, ``symphony.dev_key``): a new one is printed once and kept in
``var/dev-key`` (mode 0600). With ``AUTH_DISABLED=true`` there is none, and a
warning says so at every start. The simulator stands in for every provider that
has no key in the environment, unless ``SIMULATED_PROVIDERS`` says otherwise.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import redis
from pydantic import SecretStr
from redis import Redis

from symphony import clock
from symphony.catalog import load_catalog
from symphony.dev_key import DEV_APP, ensure_dev_key
from symphony.redis_server import RedisServer, answers, port_of
from symphony.secret_files import read_secret, write_secret
from symphony.settings import Settings, load_provider_keys

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
AUTH_DISABLED_WARNING = (
    "WARNING  AUTH_DISABLED=true: the proxy asks no app key, and anyone who can reach it spends "
    "through it without budgets or limits. Use this for local development only."
)
PR_SET_PDEATHSIG = 1


class StackError(Exception):
    """A part of the stack failed to start; the message says which and where its log is."""


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM if the supervisor dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Part:
    name: str
    health_url: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None

    def log_path(self, var_dir: Path) -> Path:
        return var_dir / "logs" / f"{self.name}.log"


@dataclass
class Stack:
    settings: Settings
    speed: float = 1.0
    workers: int = 1
    say: Callable[[str], None] = print
    parts: list[Part] = field(default_factory=list)
    redis: RedisServer | None = None
    dev_key: str | None = None  # None when auth is disabled

    def start(self, timeout: float = 60.0) -> None:
        (self.settings.var_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._ensure_redis()
        client = redis.Redis.from_url(self.settings.redis_url)
        try:
            clock.publish_clock(client, speed=self.speed)
            self._ensure_dev_key(client)
        finally:
            client.close()
        self._ensure_control_plane_tokens()
        s = self.settings
        for part in (
            Part("sim", f"{s.simulator_url}/health", ["sim"]),
            Part("engine", f"{s.engine_url}/health", ["engine", "-w", str(self.workers)]),
            Part("proxy", f"{s.proxy_url}/health", ["proxy"]),
        ):
            self._spawn(part)
        for part in self.parts:
            self._wait_healthy(part, timeout)

    def stop(self) -> None:
        for part in reversed(self.parts):
            self._terminate(part)
        self.parts.clear()
        if self.redis is not None:
            self.say("stopping the bundled Redis server")
            self.redis.stop()
            self.redis = None

    def dead_parts(self) -> list[str]:
        return [p.name for p in self.parts if p.process is not None and p.process.poll() is not None]

    def _ensure_redis(self) -> None:
        url = self.settings.redis_url
        if answers(url):
            self.say(f"redis    {url} (already running)")
            return
        host = urlparse(url).hostname or ""
        if host not in LOCAL_HOSTS:
            raise StackError(
                f"nothing answers at REDIS_URL={url}; start that server or point REDIS_URL elsewhere"
            )
        self.redis = RedisServer(port=port_of(url), data_dir=self.settings.var_dir / "redis").start()
        self.say(f"redis    {url} (bundled server, data in {self.redis.data_dir})")

    def _ensure_dev_key(self, client: Redis) -> None:
        if self.settings.auth_disabled:
            self.say(AUTH_DISABLED_WARNING)
            return
        path = self.settings.dev_key_file
        self.dev_key, created = ensure_dev_key(client, path, clock.wall_ms())
        if created:
            self.say(
                f"dev key  {self.dev_key}\n"
                f"         (app {DEV_APP}; shown only now, kept in {path} with mode 0600)"
            )
        else:
            self.say(f"dev key  app {DEV_APP}, in {path}")

    def _ensure_control_plane_tokens(self) -> None:
        """Admin and analyst tokens for the engine's API: the settings', else made once under var/."""
        if self.settings.auth_disabled:
            return
        made = {}
        for role in ("admin", "analyst"):
            if getattr(self.settings, f"{role}_token") is None:
                path = self.settings.token_file(role)
                token = read_secret(path) or secrets.token_urlsafe(32)
                write_secret(path, token)
                made[f"{role}_token"] = SecretStr(token)
        if made:
            self.settings = self.settings.model_copy(update=made)
            self.say(
                f"tokens   control-plane admin and analyst tokens in {self.settings.var_dir} (mode 0600)"
            )

    def _spawn(self, part: Part) -> None:
        log = part.log_path(self.settings.var_dir).open("ab")
        part.process = subprocess.Popen(
            [sys.executable, "-m", "symphony", *part.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env=self._child_env(),
        )
        log.close()
        self.parts.append(part)

    def _child_env(self) -> dict[str, str]:
        """The children's environment: ours, with the simulator standing in for keyless providers."""
        env = os.environ.copy()
        for role in ("admin", "analyst"):
            token = getattr(self.settings, f"{role}_token")
            if token is not None:
                env[f"{role.upper()}_TOKEN"] = token.get_secret_value()
        if "SIMULATED_PROVIDERS" not in env:
            catalog = load_catalog()
            keyed = load_provider_keys(catalog, env)
            env["SIMULATED_PROVIDERS"] = ",".join(p for p in catalog.providers if p not in keyed) or "none"
        return env

    def _wait_healthy(self, part: Part, timeout: float) -> None:
        assert part.process is not None
        deadline = clock.monotonic() + timeout
        log = part.log_path(self.settings.var_dir)
        while clock.monotonic() < deadline:
            if part.process.poll() is not None:
                raise StackError(
                    f"{part.name} exited with {part.process.returncode} at start; see {log}:\n" + _tail(log)
                )
            try:
                if httpx.get(part.health_url, timeout=1.0).status_code == 200:
                    self.say(f"{part.name:<8} {part.health_url.rsplit('/', 1)[0]} (log {log})")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise StackError(f"{part.name} did not answer {part.health_url} within {timeout:.0f}s; see {log}")

    def _terminate(self, part: Part, grace: float = 20.0) -> None:
        process = part.process
        if process is None or process.poll() is not None:
            return
        self.say(f"stopping {part.name}")
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.say(f"{part.name} ignored SIGTERM for {grace:.0f}s; killing it")
            process.kill()
            process.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def running_stack(
    settings: Settings, *, speed: float = 1.0, workers: int = 1, say: Callable[[str], None] = print
) -> Iterator[Stack]:
    """The whole stack, stopped on exit whatever happens (SIGTERM included)."""
    stack = Stack(settings, speed=speed, workers=workers, say=say)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def wait_forever(stack: Stack, seconds: float | None = None) -> None:
    """Block until Ctrl-C, SIGTERM, ``seconds`` elapse, or a part dies (which is an error)."""
    deadline = None if seconds is None else clock.monotonic() + seconds
    while deadline is None or clock.monotonic() < deadline:
        dead = stack.dead_parts()
        if dead:
            raise StackError(f"{', '.join(dead)} stopped unexpectedly; see {stack.settings.var_dir / 'logs'}")
        time.sleep(0.2)
