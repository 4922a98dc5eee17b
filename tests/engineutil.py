"""The engine as a test runs it: `python -m dataflows.engine` on its own port and data, and sample events."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from symphony import engine_client
from symphony.engine_client import EngineError
from symphony.events import Decision, Event, Usage, new_id
from symphony.settings import ENGINE_PORT_FILE

REPO = Path(__file__).resolve().parents[1]
SHARDS = 4
BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
# The control-plane tokens every test engine (and every process of a test cluster) runs with.
ADMIN_TOKEN = secrets.token_urlsafe(24)
ANALYST_TOKEN = secrets.token_urlsafe(24)
SPANS_TOKEN = secrets.token_urlsafe(24)


@dataclass
class Engine:
    """``python -m dataflows.engine`` on its own port, with its data under ``var_dir``.

    ``port`` 0 (the default): at each start the engine listens on a port its OS picks
    (``--any-port``, so parallel tests never race for a free port) and ``start`` reads it back
    from ``var_dir``; ``port`` then holds it. Another ``port`` is ENGINE_PORT: a cluster's
    followers need the leader's, and they serve no query API themselves.
    """

    redis_url: str
    var_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)  # e.g. ["-w", "2"], ["--test-faults"]
    wait_ready: bool = True  # False for a cluster process other than 0 (no query API)
    name: str = "engine"
    env: dict[str, str] = field(default_factory=dict)  # settings of this engine's own, set last
    any_port: bool = field(init=False)

    def __post_init__(self) -> None:
        self.any_port = self.port == 0
        assert self.wait_ready or not self.any_port, "only an engine serving the query API can pick its port"

    @property
    def url(self) -> str:
        """The engine's URL with the admin token, as engine_client and httpx both send it."""
        return f"http://admin:{ADMIN_TOKEN}@127.0.0.1:{self.port}"

    @property
    def bare_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.var_dir / f"{self.name}.log"

    def start(self) -> Engine:
        env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "SIM_URL", "ENGINE_PORT")}
        env.update(
            REDIS_URL=self.redis_url,
            CLICKHOUSE_URL=f"chdb://{self.var_dir / 'chdb'}",
            VAR_DIR=str(self.var_dir),
            EVENT_SHARDS=str(SHARDS),
            ADMIN_TOKEN=ADMIN_TOKEN,
            ANALYST_TOKEN=ANALYST_TOKEN,
            SPANS_TOKEN=SPANS_TOKEN,
            PYTHONPATH=str(REPO),
        )
        env.update(self.env)
        args = [*self.args, "--any-port"] if self.any_port else self.args
        if not self.any_port:
            env["ENGINE_PORT"] = str(self.port)
        if self.any_port:
            self.port_file.unlink(missing_ok=True)  # a previous start's: not this one's port
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dataflows.engine", *args],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=log,
            )
        if not self.wait_ready:
            return self
        try:
            if self.any_port:
                self.port = self._read_port(timeout=30)
            engine_client.wait_until_ready(self.url, timeout=30)
        except EngineError:
            self.kill()
            raise AssertionError(f"engine did not start:\n{self.log.read_text()[-3000:]}") from None
        return self

    @property
    def port_file(self) -> Path:
        return self.var_dir / ENGINE_PORT_FILE

    def _read_port(self, timeout: float) -> int:
        """The port the engine wrote once its query API listened; EngineError if it never did."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if self.process.poll() is not None:
                raise EngineError(f"engine exited with {self.process.returncode} before it listened")
            if time.monotonic() > deadline:
                raise EngineError(f"engine wrote no {self.port_file} within {timeout}s")
            time.sleep(0.05)
        return int(self.port_file.read_text())

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=15)
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def count(self, sql: str) -> int:
        return int(engine_client.query(self.url, sql).scalar())

    def metrics(self) -> dict[str, float]:
        """``GET /metrics`` as ``{'name{labels}': value}``."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).raise_for_status().text
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def table_digest(self, table: str, key: str = "event_id") -> tuple[int, int, str]:
        """(rows under FINAL, distinct keys, a checksum over the sorted keys) of one table."""
        sql = (
            f"SELECT count(), uniqExact({key}), toString(cityHash64(arraySort(groupArray({key}))))"
            f" FROM {table} FINAL"
        )
        rows, unique, checksum = engine_client.query(self.url, sql).rows[0]
        return int(rows), int(unique), str(checksum)


def pair(i: int) -> tuple[Decision, Usage]:
    """Request ``i``: a decision and its usage, ``i`` input tokens."""
    ts = BASE_TS + i
    decision_id = new_id(ts)
    provider, model = ("openai", "gpt-4o") if i % 3 else ("anthropic", "claude-sonnet")
    decision = Decision(
        event_id=new_id(ts),
        ts=ts,
        decision_id=decision_id,
        request_id=f"req-{i}",
        app="tests",
        task="chat",
        candidates=[f"{provider}/{model}"],
        probabilities=[1.0],
        provider=provider,
        model=model,
        policy="champion",
        policy_version="v1",
        propensity=1.0,
    )
    usage = Usage(
        event_id=new_id(ts + 5),
        ts=ts + 5,
        decision_id=decision_id,
        app="tests",
        provider=provider,
        model=model,
        attempt=1,
        status="ok",
        ttfb_ms=20.0,
        latency_ms=100.0 + i % 100,
        input_tokens=i,
        output_tokens=10,
        cost_usd=0.0001,
    )
    return decision, usage


def events(start: int, stop: int) -> list[Event]:
    return [event for i in range(start, stop) for event in pair(i)]


EXACT = (
    "SELECT (SELECT count() FROM {t} FINAL), (SELECT uniqExact(event_id) FROM {t}), (SELECT count() FROM {t})"
)


def exact(engine: Engine, table: str) -> tuple[int, int, int]:
    """(rows under FINAL, distinct event ids, raw rows) of an event table."""
    final, unique, raw = engine_client.query(engine.url, EXACT.format(t=table)).rows[0]
    return int(final), int(unique), int(raw)
