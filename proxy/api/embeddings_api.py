"""OpenAI's embeddings API: ``POST /v1/embeddings`` (the SDK's ``client.embeddings.create``).

Embeddings have their own routing (``proxy.attempts.embedding_loop``): ``model`` must name an
embedding model of the catalog (a provider's ``embeddings``; ``GET /v1/models`` lists them), as
``model`` (every provider serving it is a candidate) or ``provider/model``; ``auto`` is refused,
since vectors of different models cannot be compared. The caller's key allow-list, budgets and
rates and the providers' caps apply as to chat; the task is ``embeddings``. The answer is the
provider's, as it sent it (``encoding_format`` ``float`` or ``base64``), with Symphony's headers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from proxy import errors
from proxy.api.openai_api import JSON
from proxy.attempts.embedding_loop import EmbeddingJob
from proxy.edge.auth import caller_of
from proxy.edge.body import MAX_BODY_BYTES, parse_object, read_limited, validate
from proxy.errors import retry_after_header
from proxy.gateway import Gateway
from proxy.routing.candidates import CHARS_PER_TOKEN, Arm, TokenEstimate
from proxy.schemas import ClosedModel
from symphony.app_keys import AppKey

EMBEDDINGS_TASK = "embeddings"
MAX_INPUTS = 2048  # OpenAI's limit per request


class EmbeddingsRequest(ClosedModel):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, gt=0)
    user: str | None = None

    def inputs(self) -> list[str] | list[list[int]]:
        given = self.input
        if isinstance(given, str):
            return [given]
        if given and all(isinstance(item, int) for item in given):
            return [[int(item) for item in given]]  # type: ignore[arg-type]  # one token array
        return given  # type: ignore[return-value]  # texts, or token arrays


def estimate_of(inputs: list[str] | list[list[int]]) -> TokenEstimate:
    """Input tokens: characters / 4 (at least 1) per text, a token array's own length; no output."""
    tokens = sum(
        max(1, len(item) // CHARS_PER_TOKEN) if isinstance(item, str) else len(item) for item in inputs
    )
    return TokenEstimate(prompt_tokens=tokens, output_tokens=0)


def _checked(request: EmbeddingsRequest) -> list[str] | list[list[int]]:
    if request.model == "auto":
        raise errors.ApiError(
            400,
            "model: name an embedding model (GET /v1/models lists them): vectors of different models "
            "cannot be compared, so Symphony does not pick one.",
            param="model",
            code="model_required",
        )
    inputs = request.inputs()
    if not inputs or any(len(item) == 0 for item in inputs):
        raise errors.ApiError(400, "input: must not be empty, nor hold an empty input.", param="input")
    if len(inputs) > MAX_INPUTS:
        raise errors.ApiError(400, f"input: at most {MAX_INPUTS} inputs per request.", param="input")
    return inputs


def _permitted(arms: tuple[Arm, ...], key: AppKey | None, model: str) -> tuple[Arm, ...]:
    if key is None or not key.models:
        return arms
    kept = tuple(arm for arm in arms if key.allows(arm.provider, arm.model))
    if not kept:
        raise errors.ApiError(
            403,
            f"The key of app `{key.app}` may not use the model `{model}`; "
            f"it may use: {', '.join(key.models)}.",
            type_="permission_error",
            param="model",
            code="model_not_allowed",
        )
    return kept


class EmbeddingsApi:
    def __init__(self, gateway: Gateway, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._gateway = gateway
        self._max_body_bytes = max_body_bytes

    async def create(self, request: Request) -> Response:
        data = parse_object(await read_limited(request, self._max_body_bytes))
        embeddings = validate(EmbeddingsRequest, data)
        inputs = _checked(embeddings)
        arms = self._gateway.embedding_arms(embeddings.model)
        if not arms:
            raise errors.ApiError(
                404,
                f"The embedding model `{embeddings.model}` is not served: no provider with a key (or the "
                "simulator) has it in the catalog (GET /v1/models lists what is).",
                param="model",
                code="model_not_found",
            )
        caller = caller_of(request)
        arms = _permitted(arms, caller.key, embeddings.model)
        self._check_dimensions(embeddings, arms)
        job = EmbeddingJob(
            data, caller.app, caller.key, arms, estimate_of(inputs), EMBEDDINGS_TASK, len(inputs)
        )
        done, headers = await self._gateway.embed(job)
        result = done.result
        if isinstance(result, bytes):
            return Response(result, media_type=JSON, headers=headers)
        assert result is not None  # the loop raises when nothing was attempted
        headers |= retry_after_header(result.retry_after_s)
        return Response(result.body, status_code=result.http_status, media_type=JSON, headers=headers)

    def _check_dimensions(self, request: EmbeddingsRequest, arms: tuple[Arm, ...]) -> None:
        if request.dimensions is None:
            return
        catalog = self._gateway.catalog
        most = min(catalog.providers[arm.provider].embeddings[arm.model].dimensions for arm in arms)
        if request.dimensions > most:
            raise errors.ApiError(
                400,
                f"dimensions: `{request.model}` gives vectors of at most {most} dimensions.",
                param="dimensions",
            )
