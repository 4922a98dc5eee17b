"""`symphony sql`: analysts read ClickHouse through the engine, and nothing they type can write to it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

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
