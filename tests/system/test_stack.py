"""End to end: `symphony up` as a user runs it, the openai package, rows read back from ClickHouse."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai

from symphony import engine_client
from symphony.redis_server import answers
from tests.partsutil import part_pids, wait_for_new_pid
from tests.stackutil import processes_of, stack_env, symphony_up

REQUESTS = 40

JOINED = """
SELECT d.decision_id, d.provider, d.model, u.provider, u.model, u.input_tokens, u.output_tokens, u.status
FROM (SELECT * FROM decisions FINAL) AS d
INNER JOIN (SELECT * FROM usage FINAL) AS u ON u.decision_id = d.decision_id
"""


def _send(client: openai.OpenAI, index: int) -> tuple[str, int, int]:
    """One request; returns (model answered, prompt tokens, completion tokens) as the SDK saw them."""
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": f"request number {index}: say something"}
    ]
    if index % 2:
        usage = None
        model = ""
        for chunk in client.chat.completions.create(
            model="auto",
            messages=messages,
            max_tokens=32,
            stream=True,
            stream_options={"include_usage": True},
        ):
            model = chunk.model or model
            usage = chunk.usage or usage
    else:
        completion = client.chat.completions.create(model="auto", messages=messages, max_tokens=32)
        usage, model = completion.usage, completion.model
    assert usage is not None
    return model, usage.prompt_tokens, usage.completion_tokens


def test_requests_through_the_proxy_reach_clickhouse_exactly_once(tmp_path: Path) -> None:
    stack = stack_env(tmp_path)
    assert not answers(stack.redis_url), "the test wants a Redis URL where nothing runs yet"
    with symphony_up(stack) as up:
        assert answers(stack.redis_url), "symphony up should start the bundled Redis"
        client = openai.OpenAI(base_url=f"{stack.proxy_url}/v1", api_key=stack.dev_key, max_retries=0)
        seen = [_send(client, i) for i in range(REQUESTS)]

        engine_client.wait_for_count(
            stack.engine_url, "SELECT count() FROM usage FINAL", REQUESTS, timeout=60
        )
        time.sleep(1.5)  # anything extra (a double write) would show up by now
        rows = engine_client.query(stack.engine_url, JOINED).rows
        counts = engine_client.query(
            stack.engine_url,
            "SELECT (SELECT count() FROM decisions FINAL), (SELECT count() FROM usage FINAL),"
            " (SELECT uniqExact(event_id) FROM usage)",
        ).rows[0]
        assert up.poll() is None

    assert list(counts) == [REQUESTS, REQUESTS, REQUESTS]
    assert len(rows) == REQUESTS
    assert [r for r in rows if not (r[1] == r[3] and r[2] == r[4] and r[7] == "ok")] == []
    sent_tokens = sorted((p, c) for _, p, c in seen)
    stored_tokens = sorted((int(r[5]), int(r[6])) for r in rows)
    assert stored_tokens == sent_tokens
    assert sum(c for _, _, c in seen) > 0


def test_up_starts_again_on_new_ports_when_another_process_took_one(tmp_path: Path) -> None:
    stack = stack_env(tmp_path)
    with socket.socket() as thief:  # takes the engine's port after the pick, as a parallel test could
        thief.bind(("127.0.0.1", int(stack.env["ENGINE_PORT"])))
        thief.listen()
        taken = thief.getsockname()[1]
        with symphony_up(stack) as up:
            assert int(stack.env["ENGINE_PORT"]) != taken
            assert engine_client.query(stack.engine_url, "SELECT 1").scalar() == 1
            assert up.poll() is None
    said = (tmp_path / "up.log").read_text()
    assert f"engine query API cannot listen on 127.0.0.1:{taken}" in said  # the first start, in the log


class _AnswersEverything(BaseHTTPRequestHandler):
    """What another HTTP service on a part's port answers: 200 and an ``ok``, to any path."""

    def do_GET(self) -> None:
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_up_does_not_take_another_service_on_a_parts_port_for_that_part(tmp_path: Path) -> None:
    """The engine's port is held by a service whose /health says ok (as the proxy's did when both
    were given one port): `symphony up` must not call the engine up on that answer, but see the
    engine fail to bind and start again on new ports."""
    stack = stack_env(tmp_path)
    other = ThreadingHTTPServer(("127.0.0.1", int(stack.env["ENGINE_PORT"])), _AnswersEverything)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with symphony_up(stack) as up:
            assert int(stack.env["ENGINE_PORT"]) != other.server_port
            assert engine_client.query(stack.engine_url, "SELECT 1").scalar() == 1
            assert up.poll() is None
    finally:
        other.shutdown()
        other.server_close()


def test_sigterm_stops_every_process_it_started(tmp_path: Path) -> None:
    stack = stack_env(tmp_path)
    with symphony_up(stack) as up:
        assert len(processes_of(stack.var_dir)) >= 4  # up, redis, sim, engine, proxy
    assert up.returncode == 0
    deadline = time.monotonic() + 10
    while processes_of(stack.var_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of(stack.var_dir) == []
    assert not answers(stack.redis_url)


def test_events_survive_a_restart_of_the_whole_stack(tmp_path: Path) -> None:
    stack = stack_env(tmp_path)
    with symphony_up(stack):
        key = stack.dev_key
        client = openai.OpenAI(base_url=f"{stack.proxy_url}/v1", api_key=key, max_retries=0)
        for i in range(10):
            _send(client, i)
    assert (stack.var_dir / "dev-key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "up.log").read_text().count(key) == 1
    # The bundled Redis keeps an append-only file and the engine its recovery snapshots: nothing queued at the
    # stop is lost, nothing is written twice. The development key is kept too, and printed only once.
    with symphony_up(stack):
        assert stack.dev_key == key
        _send(openai.OpenAI(base_url=f"{stack.proxy_url}/v1", api_key=key, max_retries=0), 10)
        engine_client.wait_for_count(stack.engine_url, "SELECT count() FROM usage FINAL", 11, timeout=60)
        time.sleep(1.5)
        counts = engine_client.query(
            stack.engine_url,
            "SELECT (SELECT count() FROM decisions FINAL), (SELECT count() FROM usage FINAL)",
        ).rows[0]
    assert list(counts) == [11, 11]
    assert key not in (tmp_path / "up.log").read_text()  # the second start reuses it without printing it
    assert key not in (stack.var_dir / "logs" / "proxy.log").read_text()


def test_demo_prints_a_report_read_back_from_clickhouse_and_exits(tmp_path: Path) -> None:
    stack = stack_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--requests", "24", "--duration", "1", "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)  # stdout is the report alone: progress goes to stderr
    assert "sent 24/24 requests" in result.stderr
    assert sum(row["requests"] for row in report) == 24
    assert all(row["output_tokens"] > 0 and row["p95_ms"] >= row["p50_ms"] > 0 for row in report)
    assert all(row["cost_usd"] > 0 and 0 <= row["challenger_share"] <= 1 for row in report)
    assert all(row["fallbacks"] >= 0 for row in report)
    # Each provider's caps are in the quota policy: the headroom is a share of one of them.
    assert all(0 < row["quota_headroom"] <= 1 and row["tightest_limit"] for row in report)
    assert processes_of(stack.var_dir) == []


@dataclass
class Traffic:
    """Clients sending chat requests through the proxy back to back, each answer noted with its time."""

    proxy_url: str
    key: str
    clients: int = 2
    answers: list[tuple[float, int, str]] = field(default_factory=list)  # (sent at, status, decision id)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        self.threads = [threading.Thread(target=self._send, args=(n,)) for n in range(self.clients)]
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answers) < count:
            assert time.monotonic() < deadline, f"only {len(self.answers)} of {count} answers in {timeout}s"
            time.sleep(0.05)

    def between(self, start: float, end: float) -> list[tuple[float, int, str]]:
        return [answer for answer in self.answers if start <= answer[0] <= end]

    def _send(self, client_number: int) -> None:
        headers = {"authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.proxy_url, headers=headers, timeout=30) as client:
            for i in range(1_000_000):
                if self.stopping.is_set():
                    return
                body = {
                    "model": "auto",
                    "messages": [{"role": "user", "content": f"client {client_number}, request {i}"}],
                    "max_tokens": 16,
                }
                sent = time.monotonic()
                try:
                    answer = client.post("/v1/chat/completions", json=body)
                    status, decision = answer.status_code, answer.headers.get("x-symphony-decision-id", "")
                except httpx.HTTPError as exc:
                    status, decision = 0, repr(exc)
                self.answers.append((sent, status, decision))


def test_the_engine_killed_under_load_comes_back_and_every_decision_lands_once(tmp_path: Path) -> None:
    # Not the default shard count: every part must get the settings, or the engine misses shards.
    stack = stack_env(tmp_path, EVENT_SHARDS="8")
    with symphony_up(stack) as up:
        traffic = Traffic(stack.proxy_url, stack.dev_key).start()
        try:
            traffic.wait_for(30)
            engine = part_pids(up.pid)["engine"]
            killed_at = time.monotonic()
            os.kill(engine, signal.SIGKILL)
            wait_for_new_pid(up.pid, "engine", engine, timeout=30)
            engine_client.wait_until_ready(stack.engine_url, timeout=90)  # the engine is back by itself
            back_at = time.monotonic()
            traffic.wait_for(len(traffic.answers) + 30)
        finally:
            traffic.stop()
        answered = traffic.answers
        assert [a for a in answered if a[1] != 200] == []
        during = traffic.between(killed_at, back_at)
        assert len(during) >= 10, f"only {len(during)} requests while the engine was away"
        decisions = {decision for _, _, decision in answered}
        assert len(decisions) == len(answered)

        engine_client.wait_for_count(
            stack.engine_url, "SELECT count() FROM decisions FINAL", len(answered), timeout=60
        )
        time.sleep(1.5)  # anything extra (a double write) would show up by now
        counts = engine_client.query(
            stack.engine_url,
            "SELECT count(), count(DISTINCT decision_id) FROM decisions FINAL",
        ).rows[0]
        stored = engine_client.query(stack.engine_url, "SELECT decision_id FROM decisions FINAL").rows
        assert up.poll() is None

    assert [int(c) for c in counts] == [len(answered), len(answered)]
    assert {row[0] for row in stored} == decisions
    said = (tmp_path / "up.log").read_text()
    engine_log = stack.var_dir / "logs" / "engine.log"
    assert (
        f"engine   was killed by SIGKILL; restart 1 of 5 allowed within 300s, in 0.5s (log {engine_log})"
        in said
    )
    assert f"engine   is back: http://127.0.0.1:{stack.env['ENGINE_PORT']}/health answers" in said
    assert up.returncode == 0
