"""Writes to ClickHouse through the engine process that owns it (cluster mode on embedded chDB).

chDB allows one process per data directory, so in a Bytewax cluster on chDB the
processes other than process 0 send their Arrow tables to process 0's
``POST /insert?table=T`` as Arrow IPC streams. A refusal or a process 0 that does
not answer raises, and the sink's retry loop (``sinks.clickhouse.write_durably``)
tries again: the batch is never dropped.
"""

from __future__ import annotations

import httpx
import pyarrow as pa

from symphony.engine_client import split_credentials


class EngineWriteError(Exception):
    """Process 0 did not take the rows; the message says why."""


def to_ipc(data: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return bytes(sink.getvalue())


class EngineWriter:
    """``insert_arrow`` over HTTP to the engine at ``engine_url``."""

    def __init__(self, engine_url: str, timeout: float = 30.0) -> None:
        url, headers = split_credentials(engine_url)  # an admin token in the URL goes in a header
        self._url = f"{url}/insert"
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        try:
            response = self._client.post(self._url, params={"table": table}, content=to_ipc(data))
        except httpx.HTTPError as exc:
            raise EngineWriteError(f"engine at {self._url} did not answer: {exc!r}") from None
        if response.status_code != 200:
            raise EngineWriteError(f"engine refused {data.num_rows} rows for {table}: {response.text[:500]}")

    def close(self) -> None:
        self._client.close()
