"""Start `symphony up` as a user would, on free ports and a private var dir, and find what it left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from symphony.redis_server import free_ports, port_of

UP_BANNER = "Symphony is up."
# The stack's ports: `symphony up` binds each part to a fixed one (no part can be told to pick its own).
PORT_VARIABLES = ("REDIS_URL", "PROXY_PORT", "SIM_PORT", "ENGINE_PORT", "SCHEDULER_PORT")
# How `symphony up` says a part could not bind ``port``, per part: only these mean "pick new ports".
TAKEN = (
    "port {port} is taken",  # the bundled Redis (symphony.redis_server.PortTaken)
    "error while attempting to bind on address ('127.0.0.1', {port}): address already in use",  # uvicorn
    "engine query API cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use",
)
PORT_ATTEMPTS = 5


@dataclass(frozen=True)
class StackEnv:
    var_dir: Path
    env: dict[str, str]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PROXY_PORT']}"

    @property
    def engine_url(self) -> str:
        """The engine's URL with the analyst token `symphony up` wrote for this stack."""
        token = (self.var_dir / "analyst-token").read_text().strip()
        return f"http://analyst:{token}@127.0.0.1:{self.env['ENGINE_PORT']}"

    @property
    def redis_url(self) -> str:
        return self.env["REDIS_URL"]

    @property
    def dev_key(self) -> str:
        """The development key `symphony up` wrote for this stack."""
        return (self.var_dir / "dev-key").read_text().strip()

    @property
    def ports(self) -> list[int]:
        return [port_of(self.env["REDIS_URL"]), *(int(self.env[name]) for name in PORT_VARIABLES[1:])]

    def pick_ports(self) -> None:
        """Ports nothing listened on a moment ago, for every part (racy: ``symphony_up`` copes)."""
        redis_port, *ports = free_ports(len(PORT_VARIABLES))
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        self.env.update({name: str(port) for name, port in zip(PORT_VARIABLES[1:], ports, strict=True)})


def stack_env(tmp_path: Path, **extra: str) -> StackEnv:
    """A private var dir and free ports for `symphony up`; ``extra`` may set anything but the ports."""
    assert not set(extra) & set(PORT_VARIABLES), "stack_env picks the ports (symphony_up may pick again)"
    var_dir = tmp_path / "var"
    stack = StackEnv(
        var_dir=var_dir, env={**os.environ, "VAR_DIR": str(var_dir), "CLICKHOUSE_URL": "", **extra}
    )
    stack.pick_ports()
    return stack


def processes_of(var_dir: Path) -> list[int]:
    """PIDs of live processes started with this VAR_DIR in their environment."""
    marker = f"VAR_DIR={var_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if marker in environ.split(b"\0") and state != "Z":
            pids.append(int(entry.name))
    return pids


class PortTaken(AssertionError):
    """`symphony up` could not use one of the stack's ports: another process took it after the pick."""


def wait_until_up(
    log: Path, process: subprocess.Popen[bytes], stack: StackEnv, since: int = 0, timeout: float = 90.0
) -> None:
    """Until `symphony up` says every part answers its health check (in ``log`` after byte ``since``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        said = log.read_bytes()[since:].decode(errors="replace")
        if process.poll() is not None:
            raise (PortTaken if _port_taken(said, stack) else AssertionError)(
                f"symphony up exited early with {process.returncode}:\n{said}"
            )
        if UP_BANNER in said:
            if f"{stack.redis_url} (already running)" in said:  # another test's Redis holds the port
                raise PortTaken(f"symphony up found a Redis it did not start at {stack.redis_url}")
            return
        time.sleep(0.2)
    raise AssertionError(f"symphony up was not up within {timeout}s:\n{log.read_text()}")


def _port_taken(said: str, stack: StackEnv) -> bool:
    return any(sign.format(port=port) in said for sign in TAKEN for port in stack.ports)


@contextmanager
def symphony_up(stack: StackEnv, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`symphony up` in the background; stopped with SIGTERM (as a service manager would) on exit.

    The ports ``stack_env`` picked may be taken by another process by now: when `symphony up`
    says so, it is stopped and started again on new ones (``stack.env`` then holds them).
    """
    log_path = stack.var_dir.parent / "up.log"
    log_path.write_bytes(b"")  # this start's log only; a retry appends, so the log keeps what each printed
    for attempt in range(1, PORT_ATTEMPTS + 1):
        since = log_path.stat().st_size
        process = _launch(stack, args, log_path)
        try:
            wait_until_up(log_path, process, stack, since)
            break
        except PortTaken:
            _stop(process)
            if attempt == PORT_ATTEMPTS:
                raise
            stack.pick_ports()
        except BaseException:
            _stop(process)
            raise
    try:
        yield process
    finally:
        _stop(process)


def _launch(stack: StackEnv, args: tuple[str, ...], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "up", *args], env=stack.env, stdout=log, stderr=subprocess.STDOUT
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=90)
