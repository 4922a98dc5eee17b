"""The embedded engine's configuration: who its one user is, what it may touch, where it logs.

chDB is ``clickhouse-local`` in a library. Every connection to it is the user
``default``, and by default that user holds every grant, sources included, so a
query could read any file (``file('/etc/passwd', ...)``, the ``Filesystem``
overlay of the ``default`` database) or open a network connection (``url``,
``remote``, ``mysql``, ``s3``, ...). The configuration written here takes those
away in ClickHouse itself: ``default`` may read, write and create tables in the
``symphony`` database only, and holds no source privilege (``READ ON FILE``,
``URL``, ``REMOTE``, ``MYSQL``, ...), so every table function that reaches a
file or the network is refused with ACCESS_DENIED for everyone, the sink
included (its inserts arrive through ``INSERT ... FROM INFILE``, which needs none).
The engine's own log goes to ``<log_dir>/chdb.log`` (errors also to ``chdb.err.log``).
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

DATABASE = "symphony"
CONFIG_NAME = "config.xml"
USERS_NAME = "users.xml"

_GRANTS = (
    f"GRANT SELECT, INSERT, ALTER, CREATE TABLE, CREATE VIEW, DROP TABLE, DROP VIEW, OPTIMIZE, SHOW"
    f" ON {DATABASE}.*",
    f"GRANT CREATE DATABASE ON {DATABASE}.*",
    "GRANT KILL QUERY ON *.*",
)


def config_dir_for(data_dir: Path) -> Path:
    """Where the configuration of the engine in ``data_dir`` lives: beside it, never inside."""
    return data_dir.with_name(f"{data_dir.name}-config")


def _users_xml() -> str:
    grants = "".join(f"<query>{escape(grant)}</query>" for grant in _GRANTS)
    return (
        "<clickhouse>\n"
        "  <users>\n"
        "    <default>\n"
        "      <password></password>\n"
        "      <networks><ip>::/0</ip></networks>\n"
        "      <profile>default</profile>\n"
        "      <quota>default</quota>\n"
        f"      <grants>{grants}</grants>\n"
        "    </default>\n"
        "  </users>\n"
        "  <profiles><default></default></profiles>\n"
        "  <quotas><default></default></quotas>\n"
        "</clickhouse>\n"
    )


def _config_xml(users: Path, user_files: Path, log_dir: Path) -> str:
    return (
        "<clickhouse>\n"
        f"  <users_config>{escape(str(users))}</users_config>\n"
        f"  <user_files_path>{escape(str(user_files))}/</user_files_path>\n"
        "  <logger>\n"
        "    <level>information</level>\n"
        f"    <log>{escape(str(log_dir / 'chdb.log'))}</log>\n"
        f"    <errorlog>{escape(str(log_dir / 'chdb.err.log'))}</errorlog>\n"
        "    <size>10M</size>\n"
        "    <count>3</count>\n"
        "    <console>0</console>\n"
        "  </logger>\n"
        "</clickhouse>\n"
    )


def write_config(data_dir: Path, log_dir: Path) -> Path:
    """Write the configuration for the engine in ``data_dir`` (again at every start); return its path."""
    directory = config_dir_for(data_dir)
    user_files = directory / "user_files"  # empty: nothing is meant to be read from it
    user_files.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    users = directory / USERS_NAME
    users.write_text(_users_xml())
    config = directory / CONFIG_NAME
    config.write_text(_config_xml(users, user_files, log_dir))
    return config
