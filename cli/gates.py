"""The go-live gates' configuration (``policies/gates.v1.json``) and their PASS/FAIL lines.

``perf`` is read by ``symphony perf-run``, ``chaos`` by ``symphony chaos-run``, ``acceptance``
by ``symphony mvp3-validate``; each gate's artifacts are kept together under ``runs/gates/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

GATES_FILE = Path("policies/gates.v1.json")
ARTIFACTS = Path("runs/gates")


class _Gate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerfGate(_Gate):
    rate: float = Field(gt=0, le=2000)
    duration_s: float = Field(gt=0, le=3600)
    p95_ms: float = Field(gt=0)
    p99_ms: float = Field(gt=0)
    error_rate: float = Field(ge=0, le=1)


class ChaosScenario(_Gate):
    # provider -> the simulator's faults (simulator.faults.FaultSpec's fields)
    faults: dict[str, dict[str, float]] = {}
    action: Literal["", "redis-restart", "engine-crash"] = ""
    min_success: float = Field(ge=0, le=1)
    max_p99_ms: float = Field(gt=0)


class ChaosGate(_Gate):
    rate: float = Field(gt=0, le=500)
    duration_s: float = Field(gt=0, le=600)
    short_duration_s: float = Field(gt=0, le=600)
    scenarios: dict[str, ChaosScenario] = Field(min_length=1)


class AcceptanceGate(_Gate):
    """The bounds ``symphony mvp3-validate`` judges the six go-live acceptances against."""

    learner_min_uplift: float = Field(default=0.10, ge=0)
    learner_windows: int = Field(default=2, ge=1)
    trace_coverage: float = Field(default=0.95, ge=0, le=1)
    window_utilisation: float = Field(default=0.90, ge=0, le=1)
    overflow_cut: float = Field(default=0.30, ge=0, le=1)
    lighthouse_accessibility: float = Field(default=95, ge=0, le=100)


class Gates(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    version: str
    perf: PerfGate
    chaos: ChaosGate
    acceptance: AcceptanceGate = AcceptanceGate()


def load_gates(path: Path, perf_overrides: dict[str, Any] | None = None) -> Gates:
    """``path`` validated, with ``perf_overrides`` over its perf gate; ``ValueError`` names what is wrong."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the gates file {path}: {exc}") from None
    try:
        gates = Gates.model_validate(raw)
        return gates.model_copy(
            update={"perf": PerfGate.model_validate(gates.perf.model_dump() | (perf_overrides or {}))}
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ValueError(f"{path}: {where}: {error['msg']}") from None


@dataclass(frozen=True)
class Check:
    name: str
    measured: float
    bound: str
    ok: bool

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name:<16} {self.measured:10.2f}  (bound {self.bound})"
