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

from symphony.redis_server import free_port

UP_BANNER = "Symphony is up."


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


def stack_env(tmp_path: Path, **extra: str) -> StackEnv:
    var_dir = tmp_path / "var"
    env = {
        **os.environ,
        "VAR_DIR": str(var_dir),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "PROXY_PORT": str(free_port()),
        "SIM_PORT": str(free_port()),
        "ENGINE_PORT": str(free_port()),
        "CLICKHOUSE_URL": "",
        **extra,
    }
    return StackEnv(var_dir=var_dir, env=env)


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


def wait_until_up(log: Path, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    """Until `symphony up` says every part answers its health check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"symphony up exited early with {process.returncode}:\n{log.read_text()}")
        if UP_BANNER in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"symphony up was not up within {timeout}s:\n{log.read_text()}")


@contextmanager
def symphony_up(stack: StackEnv, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`symphony up` in the background; stopped with SIGTERM (as a service manager would) on exit."""
    log_path = stack.var_dir.parent / "up.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", *args], env=stack.env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_until_up(log_path, process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=90)
        log.close()
