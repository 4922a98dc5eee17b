"""The schema's statements for where they run: chDB or one ClickHouse server as written, a cluster rewritten.

The migrations (``sinks.clickhouse_schema``) are written once, for one node. On a ClickHouse cluster
(``CLICKHOUSE_CLUSTER``, the name in the servers' ``remote_servers``) every statement runs ``ON CLUSTER``,
so each replica applies it, and every ``*MergeTree`` table becomes its ``Replicated*MergeTree`` twin,
replicated through ClickHouse Keeper under ``/clickhouse/tables/{shard}/{database}/<table>`` with the
``{replica}`` macro (both macros come from each server's config). A statement this module has no
cluster form for raises, so a new kind of migration cannot run unreplicated by mistake.

What this cluster form is: one shard, every server a replica of it (the engine writes to any, analysts
read from any). Sharding the event tables across shards would add ``Distributed`` tables over these;
that is not done.

``analyst_access`` gives the statements for the analysts' sandbox on a server: the role, its read-only
grant, and a settings profile holding ``sinks.analyst_sandbox.AnalystLimits`` as constraints
(``CONST``), so that on a server ClickHouse's own access control holds the limits the engine's
sessions set on chDB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sinks.analyst_sandbox import AnalystLimits
from symphony.settings import CLICKHOUSE_CLUSTER_NAME

ANALYST_ROLE = "symphony_analyst"
ANALYST_PROFILE = "symphony_analyst_limits"
REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/"

_CREATE_TABLE = re.compile(r"^(\s*CREATE TABLE IF NOT EXISTS (\w+))")
_CREATE_VIEW = re.compile(r"^(\s*CREATE (?:OR REPLACE VIEW|MATERIALIZED VIEW IF NOT EXISTS) \w+)")
_ALTER_TABLE = re.compile(r"^(\s*ALTER TABLE \w+)")
_ENGINE = re.compile(r"ENGINE = (\w*)MergeTree(?:\(([^)]*)\))?")


@dataclass(frozen=True)
class Target:
    """Where the schema goes: ``cluster`` empty for chDB or one server, else the cluster's name."""

    cluster: str = ""

    def __post_init__(self) -> None:
        if self.cluster and not CLICKHOUSE_CLUSTER_NAME.fullmatch(self.cluster):
            raise ValueError(
                f"ClickHouse cluster name {self.cluster!r}: use the name in remote_servers "
                "(letters, digits, '_', '.', '-'; at most 64)"
            )

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER '{self.cluster}'" if self.cluster else ""


def for_target(statement: str, target: Target) -> str:
    """``statement`` as it runs on ``target``: as written on one node; on a cluster ON CLUSTER, replicated."""
    if not target.cluster:
        return statement
    table = _CREATE_TABLE.match(statement)
    if table:
        statement = _CREATE_TABLE.sub(lambda m: m.group(1) + target.on_cluster, statement, count=1)
        return _ENGINE.sub(lambda m: _replicated(m, table.group(2)), statement, count=1)
    for pattern in (_CREATE_VIEW, _ALTER_TABLE):
        if pattern.match(statement):
            return pattern.sub(lambda m: m.group(1) + target.on_cluster, statement, count=1)
    raise ValueError(
        f"no cluster form for this statement (add one to sinks/clickhouse_ddl.py): {statement[:80]!r}"
    )


def _replicated(engine: re.Match[str], table: str) -> str:
    kind, args = engine.group(1), engine.group(2)
    replica_args = [f"'{REPLICA_PATH}{table}'", "'{replica}'", *([args] if args else [])]
    return f"ENGINE = Replicated{kind}MergeTree({', '.join(replica_args)})"


def analyst_access(limits: AnalystLimits, database: str, target: Target) -> list[str]:
    """The analysts' role, its grant (SELECT on ``database`` only) and its limits as a settings profile."""
    if not re.fullmatch(r"\w{1,64}", database):
        raise ValueError(f"database name {database!r}: letters, digits and '_' only")
    settings = ", ".join(
        f"{name} = {_literal(value)} CONST" for name, value in limits.session_settings().items()
    )
    return [
        f"CREATE ROLE IF NOT EXISTS {ANALYST_ROLE}{target.on_cluster}",
        f"GRANT{target.on_cluster} SELECT ON {database}.* TO {ANALYST_ROLE}",
        f"CREATE SETTINGS PROFILE OR REPLACE {ANALYST_PROFILE}{target.on_cluster} SETTINGS {settings} "
        f"TO {ANALYST_ROLE}",
    ]


def _literal(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)
