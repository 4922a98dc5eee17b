"""The six go-live acceptances judged from the artifacts a validation run left (``runs/mvp3/``).

Each judge reads files only, never a live system, so a row can be judged again from the
same artifacts (``symphony mvp3-validate --judge-only``) and a test can break one condition
in a copy of them. A row passes when every one of its checks does; a missing or unreadable
artifact is a failed check that names the file, never a skipped one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.gates import AcceptanceGate
from learner.promotion import WINDOW_MS
from sinks.evidence.verify import BundleError, verify_bundle

# Where each step of the run leaves its artifacts, relative to the run's folder.
LEARNER_WEEK = "replay/learner-week.json"
LEARNER_METRICS = "replay/learner-metrics.jsonl"
PROMOTION = "replay/promotion.json"
QUOTAS_MATRIX = "replay/quotas-matrix.json"
QUOTA_KEYS = "replay/quota-keys.json"
RECONCILER_LOG = "replay/engine.log"
TRACING = "replay/tracing.json"
MODEL_MATRIX = "replay/model-matrix.json"
SCHEDULER = "scheduler-weeks.json"
PERF = "perf-run.json"
CHAOS = "chaos-run.json"
EVIDENCE = "evidence.json"
DESIGN = "design.json"

ROLLING_WINDOWS = ("minute", "day", "week")
ETA_PROVIDERS = ("perplexity", "venice", "grok", "deepseek")
SUBSCRIPTION_WINDOWS = {"openai": "3h", "anthropic": "5h", "gemini": "daily"}
SPAN_ATTRIBUTES = (
    "symphony.decision_id",
    "symphony.policy_version",
    "symphony.quota_remaining",
    "symphony.overrides",
)
_DIFF = re.compile(r"policy_vs_observed=diff provider=(\w+) window=(\w+) metric=(\w+)")
_ADJUSTMENT = re.compile(r"runtime_cap_adjustment provider=(\w+) window=(\w+) metric=(\w+)")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    figure: str  # what was measured, as people read it


@dataclass
class Row:
    number: int
    name: str
    checks: list[Check] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def check(self, name: str, ok: bool, figure: str) -> None:
        self.checks.append(Check(name, bool(ok), figure))

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "passed": self.passed,
            "checks": [vars(check) for check in self.checks],
            "artifacts": self.artifacts,
        }


class Artifacts:
    """The run's folder; reading a file records it as the row's artifact, a missing one fails the check."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def json(self, row: Row, name: str) -> Any | None:
        text = self.text(row, name)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            row.check(f"{name} is JSON", False, str(exc))
            return None

    def jsonl_last(self, row: Row, name: str) -> Any | None:
        text = self.text(row, name)
        lines = [line for line in (text or "").splitlines() if line.strip()]
        if text is not None and not lines:
            row.check(f"{name} has a line", False, "empty")
        try:
            return json.loads(lines[-1]) if lines else None
        except ValueError as exc:
            row.check(f"{name} is JSON lines", False, str(exc))
            return None

    def text(self, row: Row, name: str) -> str | None:
        path = self.folder / name
        row.artifacts.append(str(path))
        try:
            return path.read_text()
        except OSError as exc:
            row.check(name, False, f"missing ({exc.strerror or exc})")
            return None


def judge_all(folder: Path, thresholds: AcceptanceGate) -> list[Row]:
    artifacts = Artifacts(folder)
    return [judge(artifacts, thresholds) for judge in JUDGES]


def learner(artifacts: Artifacts, bounds: AcceptanceGate) -> Row:
    row = Row(1, "learner")
    week = artifacts.json(row, LEARNER_WEEK)
    if week is not None:
        report = week["report"]
        recent = [w for w in report["windows"] if w["group"] == "all" and w["ended"]][
            -bounds.learner_windows :
        ]
        starts = [int(w["start_ms"]) for w in recent]
        consecutive = len(recent) == bounds.learner_windows and all(
            later - earlier == WINDOW_MS for earlier, later in itertools.pairwise(starts)
        )
        row.check("consecutive 24h windows", consecutive, f"{len(recent)} ended windows: {starts}")
        lows = [w["uplift_low"] for w in recent]
        lows_ok = bool(lows) and all(low is not None and low >= bounds.learner_min_uplift for low in lows)
        row.check(f"uplift lower bound >= {bounds.learner_min_uplift:.0%}", lows_ok, _percentages(lows))
        alerts = sum(int(w["slo_alerts"]) + bool(w["slo"] and w["slo"]["breached"]) for w in recent)
        row.check(
            "no p95 or error-rate alert in those windows", alerts == 0 and bool(recent), f"{alerts} breaches"
        )
    metrics = artifacts.jsonl_last(row, LEARNER_METRICS)
    if metrics is not None:
        candidate = bool(metrics.get("promotion", {}).get("candidate"))
        row.check("learner-metrics promotion_candidate=true", candidate, f"candidate={candidate}")
    promotion = artifacts.json(row, PROMOTION)
    if promotion is not None:
        merged = bool(promotion.get("merged"))
        row.check("pull request merged", merged, f"#{promotion.get('number')} merged={merged}")
        in_log = bool(promotion.get("commit")) and promotion.get("commit") in promotion.get("git_log", [])
        row.check("its commit in git log", in_log, str(promotion.get("commit") or "no commit"))
    return row


def quotas(artifacts: Artifacts, bounds: AcceptanceGate) -> Row:
    row = Row(2, "quotas")
    matrix = artifacts.json(row, QUOTAS_MATRIX)
    providers: list[str] = []
    if matrix is not None:
        providers = sorted(matrix["providers"])
        shown = {r["scope"] for r in matrix["rows"]}
        missing = [p for p in providers if p not in shown]
        row.check(
            "quotas-matrix for every provider", not missing and bool(providers), _missing(missing, providers)
        )
    keys = artifacts.json(row, QUOTA_KEYS)
    if keys is not None:
        gaps = [
            f"{p}:{w}" for p in providers or sorted(keys) for w in ROLLING_WINDOWS if w not in keys.get(p, [])
        ]
        row.check("minute/day/week buckets under quota:*", not gaps and bool(keys), _missing(gaps, keys))
    console = artifacts.json(row, MODEL_MATRIX)
    if console is not None:
        clocks = console.get("eta_clocks", {})
        without = [p for p in ETA_PROVIDERS if not clocks.get(p)]
        row.check("Model Matrix ETA clocks (browser)", not without, _missing(without, ETA_PROVIDERS))
    log = artifacts.text(row, RECONCILER_LOG)
    if log is not None:
        row.check("policy_vs_observed=diff, then runtime_cap_adjustment", *_reconciled(log))
    return row


def scheduler(artifacts: Artifacts, bounds: AcceptanceGate) -> Row:
    row = Row(3, "scheduler")
    weeks = artifacts.json(row, SCHEDULER)
    if weeks is None:
        return row
    windows = {p["provider"]: p for p in weeks["compare"]["providers"]}
    for provider, window in SUBSCRIPTION_WINDOWS.items():
        share = (windows.get(provider) or {}).get("utilisation")
        ok = share is not None and share >= bounds.window_utilisation
        row.check(
            f"{provider} {window} utilisation >= {bounds.window_utilisation:.0%}", ok, _percentages([share])
        )
    change = weeks["deltas"]["overflow_change"]
    cut = None if change is None else -change
    ok = cut is not None and cut >= bounds.overflow_cut
    row.check(f"overflow >= {bounds.overflow_cut:.0%} less than the baseline week", ok, _percentages([cut]))
    return row


def tracing(artifacts: Artifacts, bounds: AcceptanceGate) -> Row:
    row = Row(4, "tracing")
    traces = artifacts.json(row, TRACING)
    if traces is None:
        return row
    coverage = traces["coverage"]
    share = coverage["traced"] / coverage["decisions"] if coverage["decisions"] else None
    ok = share is not None and share >= bounds.trace_coverage
    figure = f"{coverage['traced']} of {coverage['decisions']} decisions ({_percentages([share])})"
    row.check(f"coverage >= {bounds.trace_coverage:.0%} over the replay's last hour", ok, figure)
    linked = [a for a in traces["alerts"] if str(a.get("trace_url", "")).startswith(("http://", "https://"))]
    row.check("an alert with a trace link", bool(linked), f"{len(linked)} of {len(traces['alerts'])} alerts")
    counts = traces["span_attributes"]
    absent = [name for name in SPAN_ATTRIBUTES if not counts.get(name)]
    row.check("the four symphony.* span attributes", not absent, _missing(absent, SPAN_ATTRIBUTES))
    return row


def gates(artifacts: Artifacts, bounds: AcceptanceGate) -> Row:
    row = Row(5, "gates")
    perf = artifacts.json(row, PERF)
    if perf is not None:
        figures = ", ".join(f"{c['name']} {c['measured']:.2f} ({c['bound']})" for c in perf["checks"])
        row.check("perf-run under its thresholds", perf["passed"], figures)
    chaos = artifacts.json(row, CHAOS)
    if chaos is not None:
        scenarios = chaos["scenarios"]
        failed = [s["name"] for s in scenarios if not s["passed"]]
        ok = bool(scenarios) and not failed and not chaos["short"]
        row.check(
            "every chaos-run scenario PASS (full run)", ok, _passed_of(failed, scenarios, chaos["short"])
        )
    evidence = artifacts.json(row, EVIDENCE)
    if evidence is not None:
        tickets = evidence.get("tickets", [])
        problems = [problem for ticket in tickets if (problem := _bundle_problem(artifacts, row, ticket))]
        figure = f"{len(tickets)} tickets, " + (problems[0] if problems else "every bundle verified")
        row.check("tickets with evidence bundles that verify", bool(tickets) and not problems, figure)
    return row


def design(artifacts: Artifacts, bounds: AcceptanceGate) -> Row:
    row = Row(6, "design system")
    design_run = artifacts.json(row, DESIGN)
    if design_run is None:
        return row
    row.check(
        "tokens drive MUI and shadcn (drift check)",
        design_run.get("tokens_drift") == [],
        _listed(design_run.get("tokens_drift")),
    )
    scores = design_run.get("lighthouse", {})
    low = {view: score for view, score in scores.items() if score < bounds.lighthouse_accessibility}
    ok = bool(scores) and not low
    figure = ", ".join(f"{view} {score:g}" for view, score in scores.items()) or "no view scored"
    row.check(f"Lighthouse accessibility >= {bounds.lighthouse_accessibility:g}", ok, figure)
    visual = design_run.get("visual", {})
    ok = visual.get("passed", 0) > 0 and visual.get("failed", 1) == 0
    row.check(
        "visual tests pass against approved baselines",
        ok,
        f"{visual.get('passed', 0)} passed, {visual.get('failed', '?')} failed",
    )
    return row


JUDGES: tuple[Callable[[Artifacts, AcceptanceGate], Row], ...] = (
    learner,
    quotas,
    scheduler,
    tracing,
    gates,
    design,
)


def _bundle_problem(artifacts: Artifacts, row: Row, ticket: dict[str, Any]) -> str:
    """Why the ticket's bundle does not hold up: missing, not the file the ticket carries, or not
    as it was written (``symphony evidence verify``); "" when it does."""
    path = artifacts.folder / str(ticket.get("bundle", ""))
    row.artifacts.append(str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"ticket {ticket.get('url')}: its bundle {path.name} is missing ({exc.strerror})"
    if hashlib.sha256(data).hexdigest() != ticket.get("asset_sha256"):
        return f"ticket {ticket.get('url')}: the asset it carries is not {path.name}"
    try:
        problems = verify_bundle(path)
    except BundleError as exc:
        problems = [str(exc)]
    return f"{path.name}: {problems[0]}" if problems else ""


def _reconciled(log: str) -> tuple[bool, str]:
    """A diff noted, then a runtime cap adjusted for the same provider, window and metric."""
    diffs: set[tuple[str, ...]] = set()
    for line in log.splitlines():
        if found := _DIFF.search(line):
            diffs.add(found.groups())
        elif (found := _ADJUSTMENT.search(line)) and found.groups() in diffs:
            return True, "provider={} window={} metric={}".format(*found.groups())
    return False, f"{len(diffs)} diffs, no adjustment after one"


def _percentages(values: Iterable[float | None]) -> str:
    return ", ".join("-" if v is None else f"{v:.1%}" for v in values) or "none"


def _missing(missing: list[str], among: Iterable[Any] | Mapping[str, Any]) -> str:
    total = len(list(among))
    return f"all {total} present" if not missing else f"missing {', '.join(missing)} (of {total})"


def _passed_of(failed: list[str], scenarios: list[Any], short: bool) -> str:
    run = "short run" if short else "full run"
    figure = f"{len(scenarios) - len(failed)} of {len(scenarios)} passed ({run})"
    return figure if not failed else f"{figure}; failed: {', '.join(failed)}"


def _listed(values: Any) -> str:
    if values is None:
        return "no drift check ran"
    return "no drift" if not values else f"drifted: {', '.join(map(str, values))}"
