"""The ClickHouse sink against real chDB in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.clickhouse import (
    DEAD_LETTERS,
    MAX_TS_MS,
    SCHEMAS,
    DeadLetter,
    dead_letters_to_arrow,
    quota_snapshots_to_arrow,
    to_arrow,
    write,
)
from sinks.clickhouse_schema import MIGRATIONS, MIGRATIONS_TABLE, current_version, migrate
from sinks.clickhouse_store import ClickHouseStore, QueryError, check_read_only
from symphony.events import EVENT_TYPES, Decision, Feedback, Usage, new_id
from symphony.quotas import Eta

BASE_TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore.connect(f"chdb://{tmp_path / 'chdb'}")
    try:
        yield store
    finally:
        store.close()


def decision(i: int) -> Decision:
    ts = BASE_TS + i
    return Decision(
        event_id=new_id(ts),
        ts=ts,
        decision_id=f"d{i}",
        request_id=f"r{i}",
        app="app",
        task="chat",
        features={"prompt_tokens": float(i)},
        candidates=["openai/gpt-4o", "anthropic/claude"],
        probabilities=[0.75, 0.25],
        provider="openai",
        model="gpt-4o",
        policy="champion",
        policy_version="v1",
        propensity=0.75,
        overrides={"pin": "none"},
        quota_remaining={"openai:rpm": 99.0},
        stream=i % 2 == 0,
        fallbacks=["anthropic/claude"] if i % 2 else [],
        fallback_statuses=["429"] if i % 2 else [],
        served_by="openai/gpt-4o",
    )


def usage(i: int, **changes: object) -> Usage:
    ts = BASE_TS + i
    fields: dict[str, object] = dict(
        event_id=new_id(ts),
        ts=ts,
        decision_id=f"d{i}",
        app="app",
        provider="openai",
        model="gpt-4o",
        attempt=1,
        status="ok",
        ttfb_ms=12.5,
        latency_ms=100.0 + i,
        input_tokens=i,
        output_tokens=2 * i,
        cost_usd=0.001,
        rate_limit={"x-ratelimit-remaining-requests": "99"},
    )
    fields.update(changes)
    return Usage.model_validate(fields)


def feedback(i: int) -> Feedback:
    ts = BASE_TS + i
    return Feedback(event_id=new_id(ts), ts=ts, decision_id=f"d{i}", score=0.5, source="user")


def scalar(store: ClickHouseStore, sql: str) -> int:
    return int(store.query(sql).rows[0][0])


def test_migrations_are_idempotent(store: ClickHouseStore) -> None:
    versions = [migration.version for migration in MIGRATIONS]
    assert migrate(store) == versions
    assert migrate(store) == []
    assert current_version(store) == versions[-1]
    assert scalar(store, f"SELECT count() FROM {MIGRATIONS_TABLE}") == len(versions)
    tables = {row[0] for row in store.query("SHOW TABLES").rows}
    assert {"decisions", "usage", "feedback", DEAD_LETTERS, "quota_snapshots", MIGRATIONS_TABLE} <= tables


def test_arrow_schemas_match_tables_and_events(store: ClickHouseStore) -> None:
    migrate(store)
    for table, schema in SCHEMAS.items():
        # ALIAS columns (otel_traces has two, as the collector's table) are computed, never written.
        described = [row[0] for row in store.query(f"DESCRIBE TABLE {table}").rows if row[2] != "ALIAS"]
        assert described == schema.names, table
    for kind, model in EVENT_TYPES.items():
        table = {
            "decision": "decisions",
            "usage": "usage",
            "feedback": "feedback",
            "promotion": "promotions",
        }[kind]
        assert set(model.model_fields) - {"type"} == set(SCHEMAS[table].names)


def test_replayed_batch_counts_once_with_final(store: ClickHouseStore) -> None:
    migrate(store)
    n = 500
    usages = [usage(i) for i in range(n + 100)]
    batch = {
        "decisions": to_arrow("decisions", [decision(i) for i in range(n)])[0],
        "usage": to_arrow("usage", usages[:n])[0],
        "feedback": to_arrow("feedback", [feedback(i) for i in range(n)])[0],
    }
    overlap = {"usage": to_arrow("usage", usages[n - 100 :])[0]}

    assert write(store, [batch]) == {"decisions": n, "usage": n, "feedback": n}
    write(store, [batch, overlap])  # a replay of the whole batch, then 100 old and 100 new usage events

    assert scalar(store, "SELECT count() FROM decisions") == 2 * n
    assert scalar(store, "SELECT count() FROM decisions FINAL") == n
    assert scalar(store, "SELECT count() FROM feedback FINAL") == n
    assert scalar(store, "SELECT count() FROM usage FINAL") == n + 100
    assert scalar(store, "SELECT uniqExact(event_id) FROM usage") == n + 100
    assert scalar(store, "SELECT sum(input_tokens) FROM usage FINAL") == sum(range(n + 100))

    row = store.query(
        "SELECT features, candidates, probabilities, overrides, stream, toUnixTimestamp64Milli(ts)"
        " FROM decisions FINAL WHERE decision_id = 'd2'"
    ).rows[0]
    fallback = store.query(
        "SELECT fallbacks, fallback_statuses, served_by FROM decisions FINAL WHERE decision_id = 'd3'"
    ).rows[0]
    assert fallback == [["anthropic/claude"], ["429"], "openai/gpt-4o"]
    assert row == [
        {"prompt_tokens": 2.0},
        ["openai/gpt-4o", "anthropic/claude"],
        [0.75, 0.25],
        {"pin": "none"},
        True,
        BASE_TS + 2,
    ]


def test_values_clickhouse_cannot_hold_are_rejected_per_row() -> None:
    events = [usage(1), usage(2, input_tokens=2**70), usage(3, ts=MAX_TS_MS + 1), usage(4)]
    table, rejected = to_arrow("usage", events)
    assert table.num_rows == 2
    assert [index for index, _ in rejected] == [1, 2]
    assert "input_tokens" in rejected[0][1]
    assert "ts" in rejected[1][1]


def test_quota_snapshots_saturate_instead_of_failing() -> None:
    eta = Eta("openai", "tokens", "minute", 10, 2**70, 0, None, -(2**70), 1.5, BASE_TS)
    row = quota_snapshots_to_arrow([eta]).to_pylist()[0]
    assert (row["used"], row["remaining"], row["reset_in_ms"], row["exhaust_in_ms"]) == (
        2**64 - 1,
        0,
        None,
        -(2**63),
    )


def test_dead_letters_keep_raw_bytes_and_deduplicate_by_entry(store: ClickHouseStore) -> None:
    migrate(store)
    letters = [DeadLetter("symphony:events:0", "1-0", b"\xff{not json", "invalid JSON", BASE_TS)]
    write(store, [{DEAD_LETTERS: dead_letters_to_arrow(letters)}] * 2)
    assert scalar(store, "SELECT count() FROM dead_letters FINAL") == 1
    assert store.query("SELECT reason FROM dead_letters").rows[0][0] == "invalid JSON"


def test_read_only_queries(store: ClickHouseStore, tmp_path: Path) -> None:
    migrate(store)
    assert store.query_read_only("-- how many\n  select count() from decisions;").rows == [[0]]
    assert store.query_read_only("(SELECT 1)").rows == [[1]]
    for sql in [
        "INSERT INTO decisions (event_id) VALUES ('x')",
        "DROP TABLE decisions",
        "/* SELECT */ DROP TABLE decisions",
        "SELECT 1; DROP TABLE decisions",
        f"SELECT 1 INTO OUTFILE '{tmp_path / 'out.txt'}'",
        "",
        "   ; -- nothing",
    ]:
        with pytest.raises(QueryError, match=r"read-only|empty"):
            store.query_read_only(sql)
    assert not (tmp_path / "out.txt").exists()
    assert store.query_read_only("SELECT ';' AS s -- a comment swallows nothing").rows == [[";"]]
    for sql in ["SELECT * FROM file('/etc/passwd', 'LineAsString')", "SELECT 1 SETTINGS readonly = 0"]:
        with pytest.raises(QueryError, match=r"not allowed|may not change settings"):
            store.query_read_only(sql)
    with pytest.raises(QueryError, match=r"UNKNOWN_TABLE|Unknown table"):
        store.query_read_only("SELECT * FROM nowhere")
    assert check_read_only("WITH 1 AS x SELECT x;") == "WITH 1 AS x SELECT x"
