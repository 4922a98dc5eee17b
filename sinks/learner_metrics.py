"""The learner's report as rows of ``learner_metrics``: one per 24h window, group and estimator.

Every evaluation the engine makes (``GET /learner/metrics``) is kept, so analysts can
follow an estimate and its interval from one evaluation to the next; a window's latest
evaluation is the one with the greatest ``as_of``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from sinks.clickhouse import LEARNER_METRICS, SCHEMAS

ESTIMATORS = ("ips", "snips", "dr")


def report_table(report: Mapping[str, Any]) -> pa.Table:
    """``report`` (``dataflows.learner_report``'s shape) as Arrow columns of ``learner_metrics``."""
    shared = {
        "as_of": report["as_of_ms"],
        "champion_version": report["champion_version"],
        "challenger_version": report["challenger_version"],
        "promotion_candidate": bool(report["promotion"]["candidate"]),
    }
    rows = [
        {**shared, **_window_columns(window), **_estimate_columns(name, window[name])}
        for window in report["windows"]
        for name in ESTIMATORS
        if name in window
    ]
    return pa.Table.from_pylist(rows, schema=SCHEMAS[LEARNER_METRICS])


def _window_columns(window: Mapping[str, Any]) -> dict[str, Any]:
    slo = window.get("slo") or {}
    return {
        "window_start": window["start_ms"],
        "group": window["group"],
        "champion": window["champion"],
        "uplift_low": window["uplift_low"],
        "slo_p95_ms": slo.get("p95_ms"),
        "slo_error_rate": slo.get("error_rate"),
        "slo_breached": slo.get("breached"),
    }


def _estimate_columns(name: str, estimate: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "estimator": name,
        "value": estimate["value"],
        "low": estimate["low"],
        "high": estimate["high"],
        "samples": estimate["samples"],
        "effective_samples": estimate["effective_samples"],
    }
