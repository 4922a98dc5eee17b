"""``symphony up``: start Redis (if needed), the simulator, the engine, the proxy and the scheduler.

Each part runs as its own process (``python -m cli <part>``) with its log in
``var/logs/<part>.log`` and only the environment its row of ``cli.child_env``
allows (the engine holds no provider key, the proxy no control-plane token).

While the stack runs, ``supervise`` restarts a part that dies, after a backoff
(``cli.restart_policy``), and says so in its own output: the part, how it
ended, the attempt, the delay and the part's log. The other parts keep running
meanwhile: the proxy answers while the engine restarts, and the engine picks up
the events published meanwhile from the stream. A part that cannot stay up (more
restarts within the window than the policy allows) makes ``supervise`` give up
with a ``StackError`` naming its log, which stops the stack.

The stack stops in dependency order: the scheduler first (it lets the jobs in
flight end), then the proxy (it flushes its queued events to the stream), then
the engine, then the simulator, then a Redis server the stack started itself.
Children get SIGTERM when the supervisor dies, however it dies, so nothing is
left running.

Before the proxy starts, the stack makes sure a development key exists (app
``dev``, ``cli.dev_key``): a new one is printed once and kept in
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

from pydantic import SecretStr
from redis import Redis

from cli.child_env import child_env
from cli.dev_key import DEV_APP, ensure_dev_key
from cli.restart_policy import RestartHistory, RestartPolicy
from symphony import clock
from symphony.catalog import load_catalog
from symphony.health import PartName, answers_as
from symphony.redis_client import is_cluster_url, sync_redis
from symphony.redis_server import RedisServer, answers, port_of
from symphony.secret_files import read_secret, write_secret
from symphony.settings import Settings, load_provider_keys

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
AUTH_DISABLED_WARNING = (
    "WARNING  AUTH_DISABLED=true: the proxy asks no app key, and anyone who can reach it spends "
    "through it without budgets or limits. Use this for local development only."
)
PR_SET_PDEATHSIG = 1
SUPERVISE_TICK_S = 0.2  # how often the supervisor looks for a part that died
HEALTH_PROBE_TIMEOUT_S = 0.5  # one /health probe of a restarted part, between ticks


class StackError(Exception):
    """A part failed to start or cannot stay up; the message says which and where its log is."""


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM if the supervisor dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Part:
    name: PartName
    health_url: str
    args: list[str]
    history: RestartHistory
    process: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None  # set while it waits out a restart's backoff
    coming_back: bool = False  # restarted, not yet answering its health check

    def log_path(self, var_dir: Path) -> Path:
        return var_dir / "logs" / f"{self.name}.log"

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def healthy(self, timeout: float = HEALTH_PROBE_TIMEOUT_S) -> bool:
        """Whether the part itself answers: on a port another holds, the other's answer is not this part's."""
        return answers_as(self.health_url.removesuffix("/health"), self.name, timeout)


def exit_description(returncode: int) -> str:
    """How a process ended, in words: ``exited with code 1`` or ``was killed by SIGKILL``."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


@dataclass
class Stack:
    settings: Settings
    speed: float = 1.0
    workers: int = 1
    say: Callable[[str], None] = print
    start_ms: int | None = None  # the simulated clock's first instant (None: now)
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    parts: list[Part] = field(default_factory=list)
    redis: RedisServer | None = None
    dev_key: str | None = None  # None when auth is disabled

    def start(self, timeout: float = 60.0) -> None:
        (self.settings.var_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._ensure_redis()
        client = sync_redis(self.settings.redis_url)
        try:
            clock.publish_clock(client, start_ms=self.start_ms, speed=self.speed)
            self._ensure_dev_key(client)
        finally:
            client.close()
        self._ensure_control_plane_tokens()
        self._ensure_decision_key()
        self._ensure_dispatcher_token()
        self._ensure_spans_token()
        for part in self._make_parts():
            self._launch(part)
            self.parts.append(part)
        for part in self.parts:
            self._wait_healthy(part, timeout)

    def tend(self) -> None:
        """One round of supervision: notice deaths, restart parts whose backoff is over, greet returns."""
        now = clock.monotonic()
        for part in self.parts:
            if part.restart_at is not None:
                if now >= part.restart_at:
                    self._restart(part)
            elif part.exited():
                self._schedule_restart(part, now)
            elif part.coming_back and part.healthy():
                part.coming_back = False
                self.say(f"{part.name:<8} is back: {part.health_url} answers")

    def stop(self) -> None:
        for part in reversed(self.parts):
            self._terminate(part)
        self.parts.clear()
        if self.redis is not None:
            self.say("stopping the bundled Redis server")
            self.redis.stop()
            self.redis = None

    def _make_parts(self) -> list[Part]:
        s = self.settings
        parts: tuple[tuple[PartName, str, list[str]], ...] = (
            ("sim", f"{s.resolved_sim_url}/health", ["sim"]),
            ("engine", f"{s.engine_url}/health", ["engine", "-w", str(self.workers)]),
            ("proxy", f"{s.proxy_url}/health", ["proxy"]),
            ("scheduler", f"{s.scheduler_url}/health", ["scheduler"]),
        )
        return [Part(name, url, args, RestartHistory(self.restart_policy)) for name, url, args in parts]

    def _schedule_restart(self, part: Part, now: float) -> None:
        assert part.process is not None
        how = exit_description(part.process.returncode)
        log = part.log_path(self.settings.var_dir)
        policy = self.restart_policy
        restart = part.history.after_death(now)
        if restart is None:
            raise StackError(
                f"{part.name} {how} and cannot stay up (more than {policy.restarts_per_window} restarts "
                f"within {policy.window:g}s): giving up and stopping the stack; see {log}:\n" + _tail(log)
            )
        self.say(
            f"{part.name:<8} {how}; restart {restart.attempt} of {policy.restarts_per_window} allowed "
            f"within {policy.window:g}s, in {restart.delay:g}s (log {log})"
        )
        part.restart_at = now + restart.delay

    def _restart(self, part: Part) -> None:
        part.restart_at = None
        self._launch(part)
        part.coming_back = True
        assert part.process is not None
        self.say(f"{part.name:<8} restarted (pid {part.process.pid})")

    def _ensure_redis(self) -> None:
        url = self.settings.redis_url
        if answers(url):
            self.say(f"redis    {url} (already running)")
            return
        if is_cluster_url(url):
            raise StackError(
                f"no node of the Redis Cluster at REDIS_URL={url} answers; start the cluster first"
            )
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

    def _ensure_decision_key(self) -> None:
        """The proxy's decision-id key: the setting's, else made once under var/ (a restart keeps it,
        so feedback on decisions made before the restart still verifies)."""
        if self.settings.decision_key is not None:
            return
        path = self.settings.decision_key_file
        key = read_secret(path) or secrets.token_urlsafe(32)
        write_secret(path, key)
        self.settings = self.settings.model_copy(update={"decision_key": SecretStr(key)})

    def _ensure_dispatcher_token(self) -> None:
        """The token with which the scheduler sends jobs through the proxy: the setting's, else made once
        under var/ (only the proxy and the scheduler get it)."""
        if self.settings.dispatcher_token is not None:
            return
        path = self.settings.dispatcher_token_file
        token = read_secret(path) or secrets.token_urlsafe(32)
        write_secret(path, token)
        self.settings = self.settings.model_copy(update={"dispatcher_token": SecretStr(token)})

    def _ensure_spans_token(self) -> None:
        """The proxy's token for posting spans to the engine: the setting's, else made once under var/.
        Made even with auth disabled, so tracing into ClickHouse stays on in every `symphony up`."""
        if self.settings.spans_token is not None:
            return
        path = self.settings.token_file("spans")
        token = read_secret(path) or secrets.token_urlsafe(32)
        write_secret(path, token)
        self.settings = self.settings.model_copy(update={"spans_token": SecretStr(token)})

    def _launch(self, part: Part) -> None:
        log = part.log_path(self.settings.var_dir).open("ab")
        part.process = subprocess.Popen(
            [sys.executable, "-m", "cli", *part.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env=self._child_env(part.name),
        )
        log.close()

    def _child_env(self, part: str) -> dict[str, str]:
        """What ``part`` may receive (``cli.child_env``) of our environment, with the stack's
        control-plane tokens and the simulator standing in for keyless providers."""
        env = os.environ.copy()
        for name in ("admin_token", "analyst_token", "decision_key", "dispatcher_token", "spans_token"):
            secret = getattr(self.settings, name)
            if secret is not None:
                env[name.upper()] = secret.get_secret_value()
        if "SIMULATED_PROVIDERS" not in env:
            keyed = load_provider_keys(self.settings.read_catalog(), env)
            # The simulator is the bundled providers' twin: a provider of one's own is always called.
            simulated = [p for p in load_catalog().providers if p not in keyed]
            env["SIMULATED_PROVIDERS"] = ",".join(simulated) or "none"
        env["PROXY_WORKERS"] = str(self.settings.proxy_workers)
        return child_env(part, env, self.settings.read_catalog())

    def _wait_healthy(self, part: Part, timeout: float) -> None:
        assert part.process is not None
        deadline = clock.monotonic() + timeout
        log = part.log_path(self.settings.var_dir)
        while clock.monotonic() < deadline:
            if part.process.poll() is not None:
                raise StackError(
                    f"{part.name} exited with {part.process.returncode} at start; see {log}:\n" + _tail(log)
                )
            if part.healthy(timeout=1.0):
                base = part.health_url.removesuffix("/health")
                self.say(f"{part.name:<8} {base} (log {log})")
                if part.name == "engine":
                    token = self.settings.var_dir / "admin-token"
                    self.say(f"console  {base}/console (password: the token in {token})")
                return
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
    settings: Settings,
    *,
    speed: float = 1.0,
    start_ms: int | None = None,
    workers: int = 1,
    say: Callable[[str], None] = print,
    restart_policy: RestartPolicy | None = None,
) -> Iterator[Stack]:
    """The whole stack, stopped on exit whatever happens (SIGTERM included)."""
    stack = Stack(
        settings,
        speed=speed,
        workers=workers,
        say=say,
        start_ms=start_ms,
        restart_policy=restart_policy or RestartPolicy(),
    )
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def supervise(stack: Stack, seconds: float | None = None) -> None:
    """Until Ctrl-C, SIGTERM or ``seconds`` elapse, restart the parts that die.

    Raises ``StackError`` when a part cannot stay up (the caller then stops the stack).
    """
    deadline = None if seconds is None else clock.monotonic() + seconds
    while deadline is None or clock.monotonic() < deadline:
        stack.tend()
        time.sleep(SUPERVISE_TICK_S)
