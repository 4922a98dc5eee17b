"""The engine's metrics in the Prometheus text format, for ``GET /metrics``.

Consumer lag and safe offsets come from Redis, so process 0 reports every
process of a cluster; the sink counters are this process's own.

    symphony_consumer_lag{consumer="ingest",shard="0"} 12
    symphony_consumer_lag_seconds{consumer="ingest",shard="0"} 0.031
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from dataflows.lag import Lag, read_lags
from dataflows.trimming import safe_offsets
from sinks.clickhouse import SinkStats
from sinks.span_writer import SpanStats
from symphony import clock
from symphony.keys import CONSUMERS_KEY

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float]]


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def render(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        lines.extend(f"{metric.name}{_labels(labels)} {_number(value)}" for labels, value in metric.samples)
    return "\n".join(lines) + "\n"


def lag_metrics(lags: list[Lag]) -> list[Metric]:
    def labels(lag: Lag) -> dict[str, str]:
        return {"consumer": lag.consumer, "shard": str(lag.shard)}

    return [
        Metric(
            "symphony_consumer_lag",
            "gauge",
            "Stream entries added after the consumer's read offset, per shard.",
            [(labels(lag), float(lag.entries)) for lag in lags if lag.entries is not None],
        ),
        Metric(
            "symphony_consumer_lag_seconds",
            "gauge",
            "Age of the oldest stream entry the consumer has not read yet, per shard (0 when caught up).",
            [(labels(lag), lag.seconds) for lag in lags],
        ),
        Metric(
            "symphony_consumer_lag_measured_timestamp_seconds",
            "gauge",
            "When the lag of the consumer and shard was last measured (Unix time).",
            [(labels(lag), lag.measured_at_ms / 1000) for lag in lags],
        ),
    ]


def sink_metrics(stats: SinkStats) -> list[Metric]:
    with stats.lock:
        rows = dict(stats.rows)
        batches = dict(stats.batches)
        retries = stats.retries
        failing_since = stats.failing_since
    return [
        Metric(
            "symphony_sink_rows_written_total",
            "counter",
            "Rows this process wrote to ClickHouse, per table (replays after a restart included).",
            [({"table": table}, float(count)) for table, count in sorted(rows.items())],
        ),
        Metric(
            "symphony_sink_batches_total",
            "counter",
            "Batches each dataflow worker of this process wrote to ClickHouse.",
            [({"worker": str(worker)}, float(count)) for worker, count in sorted(batches.items())],
        ),
        Metric(
            "symphony_sink_retries_total",
            "counter",
            "ClickHouse writes of this process that failed and were retried.",
            [({}, float(retries))],
        ),
        Metric(
            "symphony_sink_failing_seconds",
            "gauge",
            "For how long this process's ClickHouse writes have been failing (0 when they succeed).",
            [({}, 0.0 if failing_since is None else clock.monotonic() - failing_since)],
        ),
    ]


def span_metrics(stats: SpanStats) -> list[Metric]:
    with stats.lock:
        counts = {
            "received": stats.received,
            "written": stats.written,
            "refused": stats.refused,
            "dropped": stats.dropped,
        }
        failures, buffered = stats.failures, stats.buffered
    return [
        Metric(
            "symphony_engine_spans_total",
            "counter",
            "Spans posted to /v1/traces: received (buffered), written to otel_traces, refused (buffer"
            " full, the exporter retries or drops them) and dropped (buffered but never written).",
            [({"outcome": outcome}, float(count)) for outcome, count in counts.items()],
        ),
        Metric(
            "symphony_engine_span_insert_failures_total",
            "counter",
            "Inserts of spans into otel_traces that failed and were retried.",
            [({}, float(failures))],
        ),
        Metric(
            "symphony_engine_spans_buffered",
            "gauge",
            "Spans waiting to be written to otel_traces.",
            [({}, float(buffered))],
        ),
    ]


def engine_metrics(client: redis.Redis, shards: int, stats: SinkStats, spans: SpanStats | None = None) -> str:
    consumers = sorted(member.decode() for member in client.smembers(CONSUMERS_KEY))  # type: ignore[union-attr]
    safe = safe_offsets(client, shards)
    metrics = lag_metrics(read_lags(client, consumers, shards))
    metrics.append(
        Metric(
            "symphony_stream_safe_offset_ms",
            "gauge",
            "Time part of the lowest offset every consumer has durably written, per shard (trim point).",
            [({"shard": str(shard)}, float(entry_id.partition("-")[0])) for shard, entry_id in safe.items()],
        )
    )
    metrics += sink_metrics(stats)
    if spans is not None:
        metrics += span_metrics(spans)
    return render(metrics)
