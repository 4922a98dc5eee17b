"""The analysts' sandbox under attack: ClickHouse, not a reading of the SQL, stops every hostile query.

One real engine answers a list of hostile queries through its HTTP API with the
analyst token. Each must get a 4xx with a message, write nothing, connect nowhere
(a listening socket stands at every address the queries name), and show no
secret; afterwards the engine still answers and still ingests. The same list then
goes straight into the sandbox, past the friendly text check, to show that the
refusals are ClickHouse's own.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from sinks.analyst_sandbox import AnalystLimits, new_query_id
from sinks.clickhouse_schema import migrate
from sinks.clickhouse_store import ClickHouseStore, QueryError
from symphony import clock, engine_client
from symphony.stream import publish
from tests.engineutil import ADMIN_TOKEN, ANALYST_TOKEN, SHARDS, Engine, events

PROVIDER_KEY = "sk-test-provider-key-that-must-never-leak-0123456789"
LIMITS = {"ANALYST_MAX_SECONDS": "3", "ANALYST_MAX_MEMORY_MB": "256", "ANALYST_MAX_RESULT_ROWS": "10000"}


class Listener:
    """A socket that accepts on a free port and counts every connection made to it."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def hostile_queries(var: Path, out: Path, port: int) -> list[str]:
    """At least 25 attacks, by class; ``out`` is a folder no query may write into."""
    host = f"127.0.0.1:{port}"
    token = var / "admin-token"
    network = [
        f"url('http://{host}/x', 'LineAsString')",
        f"remote('{host}', 'db', 't')",
        f"remoteSecure('{host}', 'db', 't')",
        f"mysql('{host}', 'db', 't', 'u', 'p')",
        f"postgresql('{host}', 'db', 't', 'u', 'p')",
        f"s3('http://{host}/bucket/key.csv', 'CSV')",
        f"hdfs('hdfs://{host}/x.csv', 'CSV')",
        f"iceberg('http://{host}/table')",
        f"mongodb('{host}', 'db', 'c', 'u', 'p', 'x String')",
        f"redis('{host}', 'k', 'k String')",
        f"urlCluster('default', 'http://{host}/x', 'LineAsString')",
    ]
    return [
        # files, by function and table function, absolute, relative, /proc and the token files
        "SELECT file('/etc/hostname')",
        f"SELECT file('{token}')",
        "SELECT file('var/admin-token')",
        "SELECT file('/proc/self/environ')",
        "SELECT * FROM file('/proc/self/environ', 'RawBLOB')",
        f"SELECT * FROM file('{token}', 'LineAsString')",
        "SELECT * FROM file('../../../../etc/passwd', 'LineAsString')",
        f"SELECT * FROM sqlite('{var}/any.db', 't')",
        "SELECT * FROM fileCluster('default', '/etc/hostname', 'LineAsString')",
        "SELECT * FROM `/proc/self/environ`",
        "SELECT * FROM default.`/etc/passwd`",
        # INTO OUTFILE in several quoting forms
        f"SELECT 1 INTO OUTFILE '{out / 'a.txt'}'",
        f"SELECT 1 INTO OUTFILE $${out / 'b.txt'}$$",
        f"SELECT 1 INTO OUTFILE $tag${out / 'c.txt'}$tag$",
        f"SELECT $$ ' $$ AS x INTO OUTFILE '{out / 'd.txt'}'",
        f"select 1 /* x */ into/**/outfile '{out / 'e.txt'}' TRUNCATE",
        f"SELECT 1 INTO OUTFILE '{out / 'f.txt'}' AND STDOUT FORMAT CSV",
        # the network, under SELECT, DESCRIBE and EXPLAIN
        *(f"SELECT * FROM {function}" for function in network),
        *(f"DESCRIBE TABLE {function}" for function in network[:5]),
        *(f"EXPLAIN SELECT * FROM {function}" for function in network[:5]),
        f"EXPLAIN PLAN SELECT * FROM {network[0]}",
        # settings
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT 1 SETTINGS max_execution_time = 0, max_memory_usage = 0",
        "SET readonly = 0",
        "SELECT * FROM (SELECT 1 SETTINGS max_result_rows = 0)",
        # writes and definitions
        "INSERT INTO decisions (event_id) VALUES ('x')",
        "DROP TABLE decisions",
        "TRUNCATE TABLE usage",
        "ALTER TABLE decisions DELETE WHERE 1",
        "CREATE TABLE stolen (a String) ENGINE = Memory",
        "CREATE FUNCTION leak AS (x) -> x",
        "OPTIMIZE TABLE decisions FINAL",
        "SELECT 1; DROP TABLE decisions",
        "SELECT * FROM executable('cat /etc/passwd', 'TSV', 'x String')",
        # endless, memory-hungry, huge results
        "SELECT groupArray(number) FROM numbers(2000000000)",
        "SELECT count() FROM numbers(100000000000000) WHERE cityHash64(number) = 0",
        "SELECT count() FROM numbers(1000000000) WHERE sipHash128(toString(number)) = ''",
        "SELECT number, toString(number) FROM numbers(50000000)",
    ]


def secrets_in(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


SECRETS = {"admin token": ADMIN_TOKEN, "analyst token": ANALYST_TOKEN, "provider key": PROVIDER_KEY}


def test_hostile_analyst_queries_are_refused_by_clickhouse_and_the_engine_carries_on(
    engine: Engine,
    redis_client: redis.Redis,
    listener: Listener,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in LIMITS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)  # what a careless parent could hand down
    (engine.var_dir / "admin-token").write_text(ADMIN_TOKEN)
    (engine.var_dir / "analyst-token").write_text(ANALYST_TOKEN)
    out = tmp_path / "out"
    out.mkdir()
    engine.start()
    queries = hostile_queries(engine.var_dir, out, listener.port)
    assert len(queries) >= 25

    refused = {}
    for sql in queries:
        answer = httpx.post(
            f"{engine.bare_url}/query",
            json={"sql": sql},
            headers={"authorization": f"Bearer {ANALYST_TOKEN}"},
            timeout=30,
        )
        assert 400 <= answer.status_code < 500, (sql, answer.status_code, answer.text[:300])
        assert answer.json()["error"], sql
        assert not secrets_in(answer.text), (sql, secrets_in(answer.text))
        refused[sql] = answer.json()["error"]

    assert list(out.iterdir()) == []
    assert listener.connections == 0
    limits = " ".join(refused[sql] for sql in queries[-4:])
    for setting in (
        "ANALYST_MAX_MEMORY_MB",
        "ANALYST_MAX_ROWS_READ",
        "ANALYST_MAX_SECONDS",
        "ANALYST_MAX_RESULT_ROWS",
    ):
        assert setting in limits, limits
    # Alive, whole and ingesting.
    assert engine.count("SELECT count() FROM system.tables WHERE database = 'symphony'") >= 5
    publish(redis_client, events(0, 50), SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", 50, timeout=30)


def test_the_sandbox_itself_refuses_them_without_the_text_check(tmp_path: Path, listener: Listener) -> None:
    """Past ``check_read_only``: each refusal comes from ClickHouse (grants, read-only, limits, parser)."""
    limits = AnalystLimits(max_seconds=3, max_memory_mb=256, max_result_rows=10_000)
    store = ClickHouseStore.connect(f"chdb://{tmp_path / 'chdb'}", limits=limits, log_dir=tmp_path / "logs")
    out = tmp_path / "out"
    out.mkdir()
    secret = tmp_path / "admin-token"
    secret.write_text(ADMIN_TOKEN)
    try:
        migrate(store)
        tables_before = store.query("SELECT name FROM system.tables WHERE database = 'symphony'").rows
        for sql in hostile_queries(tmp_path, out, listener.port):
            with pytest.raises(QueryError) as refused:
                store._sandbox.run(sql, new_query_id(), embedded=True)
            assert str(refused.value), sql
            assert ADMIN_TOKEN not in str(refused.value), sql
        assert store.query("SELECT name FROM system.tables WHERE database = 'symphony'").rows == tables_before
    finally:
        store.close()
    assert list(out.iterdir()) == []
    assert listener.connections == 0


def test_analysts_read_the_event_tables_and_views(tmp_path: Path) -> None:
    store = ClickHouseStore.connect(f"chdb://{tmp_path / 'chdb'}", log_dir=tmp_path / "logs")
    try:
        migrate(store)
        assert store.query_read_only("SELECT count() FROM decisions FINAL").rows == [[0]]
        assert store.query_read_only("WITH 2 AS x SELECT x * 21").rows == [[42]]
        views = store.query("SELECT name FROM system.tables WHERE engine = 'View'").rows
        assert views
        for (view,) in views:
            store.query_read_only(f"SELECT * FROM {view} LIMIT 1")
    finally:
        store.close()


HEAVY = "SELECT count() FROM numbers(100000000000) WHERE sipHash128(toString(number)) = ''"
HEAVY_SECONDS = 30
FRESHNESS_LIMIT_S = 2.0


def test_ingest_stays_fresh_while_a_30_second_analyst_query_runs(
    engine: Engine, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANALYST_MAX_SECONDS", str(HEAVY_SECONDS))
    monkeypatch.setenv("ANALYST_MAX_ROWS_READ", str(10**12))
    engine.start()
    # The engine's first insert pays for its start (first part, first merge); measure after it.
    publish(redis_client, events(1000, 1001), SHARDS)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions", 1, timeout=30)
    heavy_answer: list[httpx.Response] = []
    heavy = threading.Thread(
        target=lambda: heavy_answer.append(
            httpx.post(
                f"{engine.bare_url}/query",
                json={"sql": HEAVY},
                headers={"authorization": f"Bearer {ANALYST_TOKEN}"},
                timeout=HEAVY_SECONDS + 30,
            )
        )
    )
    started = clock.monotonic()
    heavy.start()
    time.sleep(1.0)  # let it get going
    freshness = []
    for i in range(12):
        event = events(i, i + 1)
        published = clock.monotonic()
        publish(redis_client, event, SHARDS)
        engine_client.wait_for_count(
            engine.url,
            f"SELECT count() FROM decisions WHERE decision_id = '{event[0].decision_id}'",  # type: ignore[attr-defined]
            1,
            timeout=10,
            interval=0.05,
        )
        freshness.append(clock.monotonic() - published)
        time.sleep(1.0)
    assert heavy.is_alive(), "the analyst query ended before the measurements did"
    heavy.join()
    ran = clock.monotonic() - started
    assert ran >= HEAVY_SECONDS * 0.9, ran
    assert "ANALYST_MAX_SECONDS" in heavy_answer[0].json()["error"]
    assert max(freshness) < FRESHNESS_LIMIT_S, freshness


def test_a_query_whose_client_goes_away_is_cancelled(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANALYST_MAX_SECONDS", "120")
    monkeypatch.setenv("ANALYST_MAX_ROWS_READ", str(10**12))
    engine.start()
    running = "SELECT count() FROM system.processes WHERE query LIKE '%sipHash128(toString(number))%'"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{engine.bare_url}/query",
            json={"sql": HEAVY},
            headers={"authorization": f"Bearer {ANALYST_TOKEN}"},
            timeout=2.0,
        )
    # The query's own text matches too, so 1 means only this probe is left.
    deadline = clock.monotonic() + 10
    while engine.count(running) > 1 and clock.monotonic() < deadline:
        time.sleep(0.2)
    assert engine.count(running) == 1
    assert "cancelling its query" in engine.log.read_text()
