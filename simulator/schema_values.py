"""Plausible values that satisfy a JSON schema: tool-call arguments and JSON-mode answers.

Covers what tool definitions and response schemas use in practice: objects
(``required`` properties, or every property when ``required`` is absent), arrays,
strings (with a few name and format hints), numbers, integers, booleans, ``enum``,
``const``, ``anyOf``/``oneOf``/``allOf`` (first branch) and local ``$ref``s. Type
names are matched case-insensitively, since Gemini's schemas spell them ``OBJECT``,
``STRING``...

Every string is made of single-space separated words, so the JSON text of a value,
rendered by ``json_text``, splits back into its words losslessly (one word, one token).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 6

# A few property names get values a reader would expect; anything else gets plain words.
NAME_HINTS: dict[str, str] = {
    "city": "Paris",
    "location": "Paris",
    "country": "France",
    "email": "ada@example.com",
    "url": "https://example.com",
    "date": "2026-01-01",
    "unit": "celsius",
    "name": "Ada",
    "language": "en",
}
FORMAT_HINTS: dict[str, str] = {
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
    "email": "ada@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
WORDS = ("routing", "quota", "latency", "signal", "answer", "window", "budget", "policy")


def json_text(value: Any) -> str:
    """The JSON text of ``value``, with ``", "`` and ``": "`` separators (single spaces only)."""
    return json.dumps(value, ensure_ascii=False)


def value_for(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """A value valid for ``schema`` (a JSON schema, or Gemini's OpenAPI subset)."""
    return _value(schema, schema, rng, "", 0)


def _value(
    schema: Mapping[str, Any], root: Mapping[str, Any], rng: random.Random, name: str, depth: int
) -> Any:
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches and isinstance(branches[0], Mapping):
            return _value(branches[0], root, rng, name, depth)
    kind = _type_of(schema)
    if kind == "object" or (kind is None and "properties" in schema):
        return _object(schema, root, rng, depth)
    if kind == "array":
        return _array(schema, root, rng, name, depth)
    if kind == "integer":
        first, last = int(schema.get("minimum", 1)), int(schema.get("maximum", 100))
        return rng.randint(first, max(first, last))
    if kind == "number":
        low, high = float(schema.get("minimum", 0.0)), float(schema.get("maximum", 100.0))
        return round(rng.uniform(low, max(low, high)), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng, name)


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/X`` or ``#/definitions/X``); others stay as they are."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part) if isinstance(target, Mapping) else None
    return target if isinstance(target, Mapping) else {}


def _type_of(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the first non-null type
        kind = next((k for k in kind if str(k).lower() != "null"), None)
    return str(kind).lower() if kind is not None else None


def _object(
    schema: Mapping[str, Any], root: Mapping[str, Any], rng: random.Random, depth: int
) -> dict[str, Any]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or depth >= MAX_DEPTH:
        return {}
    required = schema.get("required")
    names = [n for n in required if n in properties] if isinstance(required, list) else list(properties)
    return {name: _value(properties[name], root, rng, name, depth + 1) for name in names}


def _array(
    schema: Mapping[str, Any], root: Mapping[str, Any], rng: random.Random, name: str, depth: int
) -> list[Any]:
    items = schema.get("items")
    if not isinstance(items, Mapping) or depth >= MAX_DEPTH:
        return []
    count = max(1, int(schema.get("minItems", 1)))
    return [_value(items, root, rng, name, depth + 1) for _ in range(count)]


def _string(schema: Mapping[str, Any], rng: random.Random, name: str) -> str:
    hint = FORMAT_HINTS.get(str(schema.get("format", ""))) or NAME_HINTS.get(name.lower())
    if hint is not None:
        return hint
    return " ".join(rng.choices(WORDS, k=rng.randint(1, 3)))
