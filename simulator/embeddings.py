"""OpenAI's embeddings wire: ``POST {base}/embeddings``, for providers whose catalog lists embedding models.

The request: ``model``, ``input`` (a string, an array of strings, or token arrays),
``encoding_format`` (``float``, or ``base64``: little-endian float32, which the ``openai`` SDK
asks for by default), ``dimensions`` (at most the model's). Each input's vector is drawn from
a generator seeded by the model and the input, so the same text always has the same vector,
and scaled to unit length. ``usage.prompt_tokens`` counts characters / 4 (at least 1) per text
input and the tokens of a token array. Errors are OpenAI's shape (``openai_wire``).
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from simulator.wire import SimError, decode_json, validate

CHARS_PER_TOKEN = 4


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


def parse(raw: bytes) -> EmbeddingsRequest:
    request: EmbeddingsRequest = validate(EmbeddingsRequest, decode_json(raw))
    if isinstance(request.input, list) and not request.input:
        raise SimError(400, "input: must not be empty", param="input")
    return request


def inputs(request: EmbeddingsRequest) -> list[str | list[int]]:
    """Each input on its own: a text, or one token array."""
    given = request.input
    if isinstance(given, str):
        return [given]
    if all(isinstance(item, int) for item in given):
        return [[int(item) for item in given]]  # type: ignore[arg-type]  # one token array
    return list(given)  # type: ignore[arg-type]  # texts, or token arrays


def tokens(item: str | list[int]) -> int:
    return max(1, math.ceil(len(item) / CHARS_PER_TOKEN)) if isinstance(item, str) else len(item)


def vector(model: str, item: str | list[int], dimensions: int) -> list[float]:
    """A unit vector, the same for the same model and input."""
    seed = hashlib.sha256(f"{model}\0{item!r}".encode()).digest()
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def body(request: EmbeddingsRequest, dimensions: int) -> tuple[bytes, int]:
    """The answer, and the tokens it counted."""
    data: list[dict[str, Any]] = []
    counted = 0
    for index, item in enumerate(inputs(request)):
        counted += tokens(item)
        values = vector(request.model, item, dimensions)
        embedding: list[float] | str = values
        if request.encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    usage = {"prompt_tokens": counted, "total_tokens": counted}
    return orjson.dumps({"object": "list", "data": data, "model": request.model, "usage": usage}), counted
