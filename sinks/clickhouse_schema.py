"""The ClickHouse schema as numbered migrations, applied once each and recorded in ``schema_migrations``.

A migration is never edited after release: a schema change is a new migration.
Every statement is idempotent (``IF NOT EXISTS``, ``CREATE OR REPLACE VIEW``), so a
migration interrupted half-way simply runs again on the next start. The analysts'
views live as SQL files in ``dashboards/views`` and are applied by migrations too.

Event tables are ``ReplacingMergeTree`` ordered by ``(ts, event_id)``: a replayed
event has the same key, so reads with ``FINAL`` see each event once however many
times the stream delivered it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sinks.clickhouse_ddl import Target, for_target
from sinks.clickhouse_store import ClickHouseStore

MIGRATIONS_TABLE = "schema_migrations"
MIGRATIONS_TABLE_DDL = f"""
    CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
        version UInt32,
        name String,
        applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
    ) ENGINE = ReplacingMergeTree
    ORDER BY version
    """
SINGLE_NODE = Target()
VIEWS_DIR = Path(__file__).resolve().parents[1] / "dashboards" / "views"
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


def sql_file(path: Path) -> tuple[str, ...]:
    """The statements of a SQL file: ``--`` comment lines dropped, each ended by ``;`` at a line end."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    return tuple(statement.strip() for statement in _STATEMENT_END.split(text) if statement.strip())


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "event tables and dead letters",
        (
            """
            CREATE TABLE IF NOT EXISTS decisions (
                event_id String,
                ts DateTime64(3, 'UTC'),
                schema_version UInt16,
                decision_id String,
                request_id String,
                app LowCardinality(String),
                task LowCardinality(String),
                features Map(String, Float64),
                candidates Array(String),
                probabilities Array(Float64),
                provider LowCardinality(String),
                model LowCardinality(String),
                policy LowCardinality(String),
                policy_version LowCardinality(String),
                propensity Float64,
                overrides Map(String, String),
                quota_remaining Map(String, Float64),
                stream Bool,
                trace_id String,
                span_id String
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (ts, event_id)
            """,
            """
            CREATE TABLE IF NOT EXISTS usage (
                event_id String,
                ts DateTime64(3, 'UTC'),
                schema_version UInt16,
                decision_id String,
                app LowCardinality(String),
                provider LowCardinality(String),
                model LowCardinality(String),
                attempt UInt16,
                status LowCardinality(String),
                ttfb_ms Float64,
                latency_ms Float64,
                input_tokens UInt64,
                output_tokens UInt64,
                cost_usd Float64,
                rate_limit Map(String, String),
                fallback_from String
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (ts, event_id)
            """,
            """
            CREATE TABLE IF NOT EXISTS feedback (
                event_id String,
                ts DateTime64(3, 'UTC'),
                schema_version UInt16,
                decision_id String,
                score Float64,
                source LowCardinality(String)
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (ts, event_id)
            """,
            """
            CREATE TABLE IF NOT EXISTS dead_letters (
                stream LowCardinality(String),
                entry_id String,
                payload String,
                reason String,
                received_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree
            ORDER BY (stream, entry_id)
            """,
        ),
    ),
    Migration(
        2,
        "quota snapshots",
        (
            """
            CREATE TABLE IF NOT EXISTS quota_snapshots (
                as_of DateTime64(3, 'UTC'),
                provider LowCardinality(String),
                metric LowCardinality(String),
                window LowCardinality(String),
                cap UInt64,
                used UInt64,
                remaining UInt64,
                reset_in_ms Nullable(Int64),
                exhaust_in_ms Nullable(Int64),
                burn_per_min Float64
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(as_of)
            ORDER BY (provider, metric, window, as_of)
            """,
        ),
    ),
    Migration(
        3,
        "decision fallbacks",
        (
            "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS fallbacks Array(String)",
            "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS fallback_statuses Array(LowCardinality(String))",
            "ALTER TABLE decisions ADD COLUMN IF NOT EXISTS served_by LowCardinality(String)",
        ),
    ),
    Migration(4, "analyst views v1 (dashboards/views/001)", sql_file(VIEWS_DIR / "001_analyst_views.sql")),
    Migration(
        5,
        "learner metrics",
        (
            """
            CREATE TABLE IF NOT EXISTS learner_metrics (
                as_of DateTime64(3, 'UTC'),
                window_start DateTime64(3, 'UTC'),
                group LowCardinality(String),
                champion_version LowCardinality(String),
                challenger_version LowCardinality(String),
                estimator LowCardinality(String),
                value Float64,
                low Float64,
                high Float64,
                samples UInt64,
                effective_samples Float64,
                champion Float64,
                uplift_low Float64,
                slo_p95_ms Nullable(Float64),
                slo_error_rate Nullable(Float64),
                slo_breached Nullable(Bool),
                promotion_candidate Bool
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(window_start)
            ORDER BY (challenger_version, window_start, group, estimator, as_of)
            """,
        ),
    ),
    Migration(6, "analyst views v2 (dashboards/views/002)", sql_file(VIEWS_DIR / "002_learner_views.sql")),
    Migration(
        7,
        "SLO alerts",
        (
            """
            CREATE TABLE IF NOT EXISTS alerts (
                at DateTime64(3, 'UTC'),
                alert_id String,
                status LowCardinality(String),
                alertname LowCardinality(String),
                provider LowCardinality(String),
                model LowCardinality(String),
                objective LowCardinality(String),
                value Float64,
                threshold Float64,
                started_at DateTime64(3, 'UTC'),
                window_ms UInt64,
                attempts UInt64,
                trace_id String,
                decision_id String,
                trace_url String
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(started_at)
            ORDER BY (alert_id, status)
            """,
        ),
    ),
    # The OpenTelemetry collector's ClickHouse exporter schema (its traces_table.sql, column for
    # column, and its trace-id lookup table and view), so Grafana's ClickHouse data source reads
    # the proxy's spans as it reads the collector's. One change: ReplacingMergeTree with the span's
    # ids at the end of the sort key (the primary key is the exporter's), so a batch the proxy's
    # exporter sends twice (a lost reply, a retry) is one row per span under FINAL.
    Migration(
        8,
        "otel_traces (OpenTelemetry collector ClickHouse exporter schema)",
        (
            """
            CREATE TABLE IF NOT EXISTS otel_traces (
                Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
                TraceId String CODEC(ZSTD(1)),
                SpanId String CODEC(ZSTD(1)),
                ParentSpanId String CODEC(ZSTD(1)),
                TraceState String CODEC(ZSTD(1)),
                SpanName LowCardinality(String) CODEC(ZSTD(1)),
                SpanKind LowCardinality(String) CODEC(ZSTD(1)),
                ServiceName LowCardinality(String) CODEC(ZSTD(1)),
                ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
                ScopeName String CODEC(ZSTD(1)),
                ScopeVersion String CODEC(ZSTD(1)),
                SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
                Duration UInt64 CODEC(T64, ZSTD(1)),
                StatusCode LowCardinality(String) CODEC(ZSTD(1)),
                StatusMessage String CODEC(ZSTD(1)),
                Events Nested (
                    Timestamp DateTime64(9),
                    Name LowCardinality(String),
                    Attributes Map(LowCardinality(String), String)
                ) CODEC(ZSTD(1)),
                Links Nested (
                    TraceId String,
                    SpanId String,
                    TraceState String,
                    Attributes Map(LowCardinality(String), String)
                ) CODEC(ZSTD(1)),
                ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2),
                    CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
                SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2),
                    CAST(SpanAttributes, 'Array(Tuple(String, String))')),
                INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
                INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
                INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
                INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
                INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
                INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
                INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toDate(Timestamp)
            PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
            ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp, TraceId, SpanId)
            SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
            """,
            """
            CREATE TABLE IF NOT EXISTS otel_traces_trace_id_ts (
                TraceId String CODEC(ZSTD(1)),
                Start DateTime64(9) CODEC(Delta(8), ZSTD(1)),
                End DateTime64(9) CODEC(Delta(8), ZSTD(1)),
                INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
            ) ENGINE = MergeTree
            PARTITION BY toDate(Start)
            ORDER BY (TraceId, Start)
            SETTINGS index_granularity = 8192
            """,
            """
            CREATE MATERIALIZED VIEW IF NOT EXISTS otel_traces_trace_id_ts_mv
            TO otel_traces_trace_id_ts
            AS SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End
            FROM otel_traces
            WHERE TraceId != ''
            GROUP BY TraceId
            """,
        ),
    ),
    Migration(
        9,
        "evidence bundles",
        (
            """
            CREATE TABLE IF NOT EXISTS evidence_bundles (
                bundle_id String,
                incident_id String,
                decision_id String,
                trigger LowCardinality(String),
                at DateTime64(3, 'UTC'),
                path String,
                sha256 String,
                bytes UInt64,
                file_hashes Map(String, String),
                ticket_links Array(String),
                recorded_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree(recorded_at)
            ORDER BY (incident_id, bundle_id)
            """,
        ),
    ),
    # The `promotion` event (symphony.events.Promotion): what `learner-promote` opened (the console shows it).
    Migration(
        10,
        "learner promotions",
        (
            """
            CREATE TABLE IF NOT EXISTS promotions (
                event_id String,
                ts DateTime64(3, 'UTC'),
                schema_version UInt16,
                version String,
                champion_version String,
                challenger_version String,
                candidate Bool,
                uplift_low Nullable(Float64),
                forced_over Array(String),
                base String,
                branch String,
                commit String,
                pull_request_url String,
                pull_request_number UInt32,
                diff String
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (ts, event_id)
            """,
        ),
    ),
)


def _applied(store: ClickHouseStore) -> set[int]:
    rows = store.query(f"SELECT version FROM {MIGRATIONS_TABLE} FINAL").rows
    return {int(row[0]) for row in rows}


def migrate(
    store: ClickHouseStore, migrations: tuple[Migration, ...] = MIGRATIONS, target: Target = SINGLE_NODE
) -> list[int]:
    """Apply the migrations not yet recorded, in order; return the versions applied now.

    ``target``: chDB or one server (the statements as written), or a cluster (``sinks.clickhouse_ddl``).
    """
    store.command(for_target(MIGRATIONS_TABLE_DDL, target))
    done = _applied(store)
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        for statement in migration.statements:
            store.command(for_target(statement, target))
        store.command(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES ({{version:UInt32}}, {{name:String}})",
            parameters={"version": migration.version, "name": migration.name},
        )
        applied.append(migration.version)
    return applied


def current_version(store: ClickHouseStore) -> int:
    return max(_applied(store), default=0)
