"""The simulator's admin API: faults, rate limits and ground truth, changed at runtime.

- ``GET /admin/faults``; ``PUT /admin/faults/{provider}`` with
  ``{"rate_429", "rate_5xx", "hang_rate", "slow_ttft_ms"}`` (all optional; the body
  replaces that provider's faults, unnamed fields are 0); ``DELETE /admin/faults``
  clears every provider's faults.
- ``GET /admin/limits``; ``PUT /admin/limits/{provider}`` with ``{"rpm", "tpm"}``
  (unnamed fields take the generous defaults); ``DELETE /admin/limits`` restores the
  defaults and starts fresh windows.
- ``GET /admin/truth``: ground-truth quality per arm and task; ``PUT /admin/truth/{task}``
  with ``{"provider/model": quality, ...}`` sets those arms' quality for the task (others
  keep theirs; a task not in the table is added, its unnamed arms at the default quality);
  ``DELETE /admin/truth`` restores the built-in table.

Bad input is a 400 whose ``error.field`` names the field; an unknown provider a 404.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, Field, RootModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator.faults import FaultSpec
from simulator.limits import Limits
from simulator.serving import Simulator
from simulator.truth import DEFAULT_QUALITY, truth_table

JSON = "application/json"
M = TypeVar("M", bound=BaseModel)


class TaskQuality(RootModel[dict[str, float]]):
    """Quality in [0, 1] per arm for one task."""

    root: dict[str, float] = Field(min_length=1)


class AdminError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


def _dump(specs: dict[str, FaultSpec] | dict[str, Limits]) -> dict[str, Any]:
    return {provider: spec.model_dump() for provider, spec in specs.items()}


async def _parse(model: type[M], request: Request) -> M:
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise AdminError(400, "the body is not JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or None
        raise AdminError(400, f"{field or 'body'}: {error['msg']}", field) from None


class Admin:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._truth = truth_table(sim.catalog)

    def routes(self) -> list[Route]:
        return [
            Route("/admin/faults", self.get_faults, methods=["GET"]),
            Route("/admin/faults", self.clear_faults, methods=["DELETE"]),
            Route("/admin/faults/{provider}", self.put_faults, methods=["PUT"]),
            Route("/admin/limits", self.get_limits, methods=["GET"]),
            Route("/admin/limits", self.reset_limits, methods=["DELETE"]),
            Route("/admin/limits/{provider}", self.put_limits, methods=["PUT"]),
            Route("/admin/truth", self.truth, methods=["GET"]),
            Route("/admin/truth", self.reset_truth, methods=["DELETE"]),
            Route("/admin/truth/{task}", self.put_truth, methods=["PUT"]),
        ]

    def _provider(self, request: Request) -> str:
        provider: str = request.path_params["provider"]
        if provider not in self._sim.catalog.providers:
            raise AdminError(404, f"unknown provider {provider!r}", "provider")
        return provider

    async def get_faults(self, request: Request) -> Response:
        return _json(_dump(self._sim.faults.specs()))

    async def put_faults(self, request: Request) -> Response:
        provider = self._provider(request)
        spec = await _parse(FaultSpec, request)
        self._sim.faults.set(provider, spec)
        return _json({provider: spec.model_dump()})

    async def clear_faults(self, request: Request) -> Response:
        self._sim.faults.reset()
        return _json(_dump(self._sim.faults.specs()))

    async def get_limits(self, request: Request) -> Response:
        return _json(_dump(self._sim.limits.limits()))

    async def put_limits(self, request: Request) -> Response:
        provider = self._provider(request)
        limits = await _parse(Limits, request)
        self._sim.limits.set(provider, limits)
        return _json({provider: limits.model_dump()})

    async def reset_limits(self, request: Request) -> Response:
        self._sim.limits.reset()
        return _json(_dump(self._sim.limits.limits()))

    async def truth(self, request: Request) -> Response:
        return _json(self._truth)

    async def put_truth(self, request: Request) -> Response:
        task: str = request.path_params["task"]
        quality = (await _parse(TaskQuality, request)).root
        for arm, value in quality.items():
            if arm not in self._truth:
                raise AdminError(404, f"unknown arm {arm!r}: arms are provider/model from the catalog", arm)
            if not 0.0 <= value <= 1.0:
                raise AdminError(400, f"{arm}: quality must be from 0 to 1, got {value}", arm)
        for arm, row in self._truth.items():
            row[task] = quality.get(arm, row.get(task, DEFAULT_QUALITY))
        return _json({arm: row[task] for arm, row in self._truth.items()})

    async def reset_truth(self, request: Request) -> Response:
        self._truth = truth_table(self._sim.catalog)
        return _json(self._truth)


async def admin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminError)
    return _json({"error": {"message": exc.message, "field": exc.field}}, exc.status)
