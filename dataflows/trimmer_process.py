"""The stream trimmer (``dataflows.trimming``) in a process of its own, beside the engine.

Why not a thread of the engine: the trimmer reads Bytewax's recovery store, a
SQLite database in WAL mode, with Python's ``sqlite3``, which is not the SQLite
that Bytewax has compiled in. SQLite coordinates connections with POSIX advisory
locks, and those belong to a process: two copies of SQLite in one process cannot
see each other's locks. Each time the trimmer opened the store it found the
``-shm`` file unlocked, took itself for the first connection, and truncated the
file that Bytewax's connection has mapped in memory (``ftruncate(<part>.sqlite3-shm, 3)``
four times per round, seen with strace). Bytewax's next commit wrote into the
mapping past the file's end and took SIGBUS (``walIndexAppend`` -> ``walCleanupHash``),
and chDB's fatal-signal handler, installed for the whole process, caught it: from
then on chDB answered every query with "The server is shutting down due to a fatal
error" while the dataflow thread sat in the handler.

In a separate process the locks are real, and the read is SQLite's ordinary
reader beside a writer in another process. The child gets its settings as one
JSON line on stdin and runs until stdin closes: the engine closes it to stop the
trimmer, and the kernel closes it when the engine dies, even by SIGKILL, so no
trimmer outlives its engine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from dataflows.trimming import Trimmer
from symphony.process_logging import LogFormat, log_to_stderr

log = logging.getLogger(__name__)

RESTART_AFTER_S = 1.0  # a trimmer that died is started again after this long
STOP_WAIT_S = 5.0


@dataclass(frozen=True)
class TrimmerConfig:
    """What ``dataflows.trimming.Trimmer`` needs; sent on stdin, as the Redis URL may hold a password."""

    redis_url: str
    recovery_dir: str
    consumer: str
    step_id: str
    shards: int
    interval: float
    log_format: LogFormat = "text"


class TrimmerProcess:
    """Runs ``python -m dataflows.trimmer_process`` and starts it again if it dies while the engine runs."""

    def __init__(self, config: TrimmerConfig) -> None:
        self._config = config
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="stream-trimmer-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Close the child's stdin (its signal to stop), wait for it, kill it if it does not stop."""
        with self._lock:
            self._stop.set()
            process = self._process
        if process is None:
            return
        _close(process.stdin)
        try:
            process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning(
                "the stream trimmer (pid %d) did not stop within %.0fs; killing it", process.pid, STOP_WAIT_S
            )
            process.kill()
            process.wait()
        if self._watcher is not None:
            self._watcher.join(STOP_WAIT_S)

    def _spawn(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            # Inherits stdout/stderr: its log lines land in the engine's log. No other fd is inherited
            # (close_fds), so only this process holds the write end of the child's stdin.
            process = subprocess.Popen(
                [sys.executable, "-m", "dataflows.trimmer_process"],
                stdin=subprocess.PIPE,
                close_fds=True,
            )
            assert process.stdin is not None
            try:
                process.stdin.write(json.dumps(asdict(self._config)).encode() + b"\n")
                process.stdin.flush()
            except BrokenPipeError:
                pass  # it died at once; the watcher reports it and starts another
            self._process = process

    def _watch(self) -> None:
        while True:
            with self._lock:
                process = self._process
            if process is None:
                return
            code = process.wait()
            if self._stop.is_set():
                return
            log.warning(
                "the stream trimmer exited with code %d; starting it again in %.0fs", code, RESTART_AFTER_S
            )
            if self._stop.wait(RESTART_AFTER_S):
                return
            self._spawn()


def _close(stream: IO[bytes] | None) -> None:
    if stream is not None:
        with contextlib.suppress(OSError):
            stream.close()


def main() -> None:
    """The child: read the settings line, trim until stdin closes."""
    # Ctrl-C in a terminal reaches the whole process group; the engine decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    line = sys.stdin.buffer.readline()
    if not line:
        return  # the engine went away before sending the settings
    config = TrimmerConfig(**json.loads(line))
    log_to_stderr(config.log_format)
    trimmer = Trimmer(
        config.redis_url,
        Path(config.recovery_dir),
        config.consumer,
        config.step_id,
        config.shards,
        config.interval,
    )
    trimmer.start()
    try:
        while sys.stdin.buffer.read(4096):
            pass  # nothing more is sent; EOF means stop
    finally:
        trimmer.stop()


if __name__ == "__main__":
    main()
