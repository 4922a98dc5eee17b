"""The schema for a ClickHouse cluster: every statement ON CLUSTER, every MergeTree replicated, all of it
ClickHouse's own grammar (parsed by chDB's parser); the single-node form is the migrations as written.

No ClickHouse cluster or server runs here: the cluster DDL is checked as text and parsed, never executed
(docs/deploy.md says what was and was not run).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest

from sinks.analyst_sandbox import AnalystLimits
from sinks.clickhouse_ddl import ANALYST_PROFILE, ANALYST_ROLE, Target, analyst_access, for_target
from sinks.clickhouse_schema import MIGRATIONS, MIGRATIONS_TABLE_DDL, current_version, migrate
from sinks.clickhouse_store import ClickHouseStore
from symphony.settings import Settings

CLUSTER = Target("prod_cluster")
STATEMENTS = [MIGRATIONS_TABLE_DDL, *(s for m in MIGRATIONS for s in m.statements)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    store = ClickHouseStore.connect(f"chdb://{tmp_path / 'chdb'}", log_dir=tmp_path)
    try:
        yield store
    finally:
        store.close()


def parsed(store: ClickHouseStore, sql: str) -> str:
    """The statement as ClickHouse's parser reads it back (raises on a syntax error)."""
    return str(store.query("SELECT formatQuerySingleLine({sql:String})", {"sql": sql}).rows[0][0])


def test_on_one_node_the_statements_run_as_written(store: ClickHouseStore) -> None:
    assert all(for_target(s, Target()) == s for s in STATEMENTS)
    assert migrate(store, target=Target()) == [m.version for m in MIGRATIONS]
    assert current_version(store) == MIGRATIONS[-1].version


def test_on_a_cluster_every_statement_runs_on_every_node_and_every_table_is_replicated(
    store: ClickHouseStore,
) -> None:
    tables = 0
    for statement in STATEMENTS:
        text = parsed(store, for_target(statement, CLUSTER))
        created = re.match(r"CREATE TABLE IF NOT EXISTS (\w+) ON CLUSTER prod_cluster \(", text)
        assert created or re.match(
            r"(CREATE OR REPLACE VIEW|CREATE MATERIALIZED VIEW IF NOT EXISTS|ALTER TABLE) \w+"
            r" ON CLUSTER prod_cluster ",
            text,
        ), text[:120]
        if created:
            tables += 1
            table = created.group(1)
            engine = re.search(r"ENGINE = (\w+)\(([^)]*)\)", text)
            assert engine is not None and engine.group(1).startswith("Replicated"), text
            path, replica = engine.group(2).split(", ")[:2]
            assert (path, replica) == (f"'/clickhouse/tables/{{shard}}/{{database}}/{table}'", "'{replica}'")
            original = re.search(r"ENGINE = (\w+)", parsed(store, statement))
            assert original is not None and engine.group(1) == "Replicated" + original.group(1)
    # the migrations table; decisions, usage, feedback, dead_letters; quota_snapshots, learner_metrics,
    # alerts; otel_traces and its trace-id index table; evidence_bundles; promotions
    assert tables == 12


def test_an_engine_argument_stays_after_the_replica_arguments() -> None:
    versioned = "CREATE TABLE IF NOT EXISTS t (v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY v"
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/t', '{replica}', v)"
        in (for_target(versioned, CLUSTER))
    )


def test_a_statement_without_a_cluster_form_is_refused_and_so_is_a_bad_cluster_name() -> None:
    with pytest.raises(ValueError, match="no cluster form"):
        for_target("DROP TABLE decisions", CLUSTER)
    with pytest.raises(ValueError, match="remote_servers"):
        Target("prod'; DROP")
    with pytest.raises(pydantic.ValidationError, match="remote_servers"):
        Settings(clickhouse_cluster="a b")


@pytest.mark.parametrize("target", [Target(), CLUSTER], ids=["one server", "cluster"])
def test_the_analyst_role_and_its_limits_as_access_control(store: ClickHouseStore, target: Target) -> None:
    limits = AnalystLimits(max_seconds=12, max_memory_mb=256, max_result_rows=500)
    role, grant, profile = (parsed(store, s) for s in analyst_access(limits, "symphony", target))
    on = " ON CLUSTER prod_cluster" if target.cluster else ""
    assert role == f"CREATE ROLE IF NOT EXISTS {ANALYST_ROLE}{on}"
    assert grant == f"GRANT{on} SELECT ON symphony.* TO {ANALYST_ROLE}"
    assert profile.startswith(f"CREATE SETTINGS PROFILE OR REPLACE `{ANALYST_PROFILE}`{on} SETTINGS ")
    assert profile.endswith(f" TO {ANALYST_ROLE}")
    for setting in (
        "max_execution_time = 12",
        "max_memory_usage = 268435456",
        "max_result_rows = 500",
        "readonly = 1",
    ):
        assert f"{setting} CONST" in profile, setting
