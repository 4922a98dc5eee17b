"""`symphony sql`: analysts read ClickHouse through the engine, and nothing they type can write to it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import redis

from symphony import engine_client
from symphony.stream import publish
from tests.engineutil import ANALYST_TOKEN, SHARDS, Engine, events


def sql(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ENGINE_PORT": str(engine.port),
        "REDIS_URL": engine.redis_url,
        "ANALYST_TOKEN": ANALYST_TOKEN,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", "sql", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_reads_as_a_table_or_json_and_refuses_every_write(engine: Engine, redis_client: redis.Redis) -> None:
    engine.start()
    publish(redis_client, events(0, 50), SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM usage FINAL", 50)

    table = sql(engine, "SELECT provider, count() AS n FROM usage FINAL GROUP BY provider ORDER BY provider")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["provider", "n"]
    small = sql(engine, "SELECT toFloat64(0.0000456) AS cost_usd, toFloat64(1234.5678) AS tokens")
    assert small.stdout.splitlines()[-1].split() == ["0.0000456", "1,235"]  # by magnitude, not 0.00
    rows = json.loads(sql(engine, "SELECT count() AS n FROM usage FINAL", "--json").stdout)
    assert rows == [{"n": 50}]

    for statement in (
        "DROP TABLE usage",
        "INSERT INTO usage (event_id) VALUES ('x')",
        "ALTER TABLE usage DELETE WHERE 1",
        "TRUNCATE TABLE usage",
        "SELECT 1; DROP TABLE usage",
    ):
        refused = sql(engine, statement)
        assert refused.returncode == 1, statement
        assert refused.stderr.startswith("symphony: ") and "read" in refused.stderr.lower(), refused.stderr
    assert engine.count("SELECT count() FROM usage FINAL") == 50


def test_says_what_to_do_when_the_engine_is_not_running(engine: Engine) -> None:
    # A port bound but never listening: connections to it are refused, and no server can take it meanwhile.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        engine.port = held.getsockname()[1]
        refused = sql(engine, "SELECT 1")
    assert refused.returncode == 1
    assert f"engine at http://127.0.0.1:{engine.port}" in refused.stderr


def test_a_refused_token_says_where_it_was_looked_for(engine: Engine, tmp_path: Path) -> None:
    engine.start()
    elsewhere = tmp_path / "elsewhere"  # not where `symphony up` ran: no var/ here
    elsewhere.mkdir()
    env = {**os.environ, "ENGINE_PORT": str(engine.port), "REDIS_URL": engine.redis_url}
    for name in ("ANALYST_TOKEN", "ADMIN_TOKEN", "VAR_DIR"):
        env.pop(name, None)

    def sql_here() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "cli", "sql", "SELECT 1"]
        return subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)

    token_file = elsewhere / "var" / "analyst-token"
    missing = sql_here()
    assert missing.returncode == 1 and "(401)" in missing.stderr
    assert f"looked for in {token_file}" in missing.stderr and "no such file" in missing.stderr
    assert "VAR_DIR" in missing.stderr and "ANALYST_TOKEN" in missing.stderr
    token_file.parent.mkdir()
    token_file.write_text("a-token-from-another-stack")
    stale = sql_here()
    assert stale.returncode == 1 and "(401)" in stale.stderr
    assert f"read from {token_file}" in stale.stderr
    assert "a-token-from-another-stack" not in stale.stderr
