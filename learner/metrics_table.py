"""The learner's report as rows for people: one per window and group, then the promotion verdict."""

from __future__ import annotations

from typing import Any

from learner.promotion import uplift_text
from symphony import clock

COLUMNS = ["window", "group", "n", "champion", "ips", "snips", "dr (95% CI)", "ess", "uplift low", "slo"]


def rows(report: dict[str, Any]) -> list[list[Any]]:
    return [_row(window) for window in report["windows"]]


def _row(window: dict[str, Any]) -> list[Any]:
    dr = window["dr"]
    slo = window["slo"]
    health = "" if slo is None else ("BREACH" if slo["breached"] else "ok")
    return [
        clock.utc_datetime(int(window["start_ms"])).date().isoformat(),
        window["group"],
        window["samples"],
        round(window["champion"], 4),
        round(window["ips"]["value"], 4),
        round(window["snips"]["value"], 4),
        f"{dr['value']:.4f} [{dr['low']:.4f}, {dr['high']:.4f}]",
        round(dr["effective_samples"], 1),
        uplift_text(window["uplift_low"]),
        health,
    ]


def verdict_line(report: dict[str, Any]) -> str:
    promotion = report["promotion"]
    head = (
        f"challenger {report['challenger_version']} against champion {report['champion_version']}:"
        f" {report['decisions']} decisions evaluated, {report['awaiting_feedback']} awaiting feedback"
    )
    if promotion["candidate"]:
        return f"{head}\npromotion candidate: yes"
    return f"{head}\npromotion candidate: no\n" + "\n".join(
        f"  - {reason}" for reason in promotion["reasons"]
    )
