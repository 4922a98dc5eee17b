"""Reading canonical (OpenAI-format) requests and writing canonical answers, for translating adapters.

The Anthropic and Gemini adapters share these: what a request asks for (its
parameters, text, images, token limit, stop sequences) and the shape of the
``chat.completion`` body they answer with, and the turns both build (``merge_turns``:
both providers want user and assistant turns to alternate). A parameter a translating
adapter does not map is refused by ``Adapter.request`` (its ``mapped_params``), never
dropped on the way.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.adapters.features import UnsupportedFeature
from proxy.adapters.sse import usage_object
from symphony.clock import wall_ms

SYSTEM_ROLES = ("system", "developer")
# The parameters both translating adapters map (with this module's readers); each adds its sampling ones.
MAPPED_PARAMS = frozenset(
    {
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "n",  # 1 only: Adapter.request refuses more (never_capabilities)
    }
)
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class InlineImage:
    mime_type: str
    data: str  # base64


def system_texts(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """The non-empty texts of the ``system`` and ``developer`` messages, in order."""
    texts = (text_of(m.get("content")) for m in messages if m.get("role") in SYSTEM_ROLES)
    return [text for text in texts if text]


def merge_turns(turns: Iterable[tuple[str, Sequence[dict[str, Any]]]], key: str) -> list[dict[str, Any]]:
    """``(role, items)`` pairs as ``{"role": role, key: items}`` turns that alternate, as Anthropic and
    Gemini want: a turn with no items is dropped, consecutive turns of one role become one.

    >>> merge_turns([("user", [1]), ("user", [2]), ("model", []), ("model", [3])], "parts")
    [{'role': 'user', 'parts': [1, 2]}, {'role': 'model', 'parts': [3]}]
    """
    merged: list[dict[str, Any]] = []
    for role, items in turns:
        if not items:
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1][key].extend(items)
        else:
            merged.append({"role": role, key: list(items)})
    return merged


def inline_image(url: str) -> InlineImage | None:
    """A ``data:<mime>;base64,<data>`` URL's parts; None for any other URL."""
    match = _DATA_URL.fullmatch(url.strip())
    if match is None:
        return None
    try:
        b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError):
        return None
    return InlineImage(match["mime"], match["data"])


def image_url(part: Mapping[str, Any]) -> str:
    """The URL of an ``image_url`` content part (``{"image_url": {"url": …}}`` or a bare string)."""
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    return url if isinstance(url, str) else ""


def text_of(content: object) -> str:
    """A message's text: the string, or its text parts joined (``refusal`` parts too)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or part.get("refusal") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "refusal")
        )
    return ""


def token_limit(body: Mapping[str, Any]) -> int | None:
    """``max_completion_tokens`` (the current name), else ``max_tokens``."""
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    return limit if isinstance(limit, int) else None


def stop_sequences(body: Mapping[str, Any]) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop]
    return [item for item in stop if isinstance(item, str)] if isinstance(stop, list) else []


def tool_arguments(provider: str, call: Mapping[str, Any]) -> dict[str, Any]:
    """An assistant tool call's ``arguments`` (a JSON string) as an object."""
    function = call.get("function")
    raw = function.get("arguments") if isinstance(function, dict) else None
    if raw in (None, ""):
        return {}
    try:
        value = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UnsupportedFeature(provider, "tool call arguments that are not a JSON object", "messages")
    return value


def function_tools(provider: str, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``function`` objects of ``tools``; other tool types are refused."""
    functions = []
    for tool in body.get("tools") or []:
        if not (
            isinstance(tool, dict)
            and tool.get("type") == "function"
            and isinstance(tool.get("function"), dict)
        ):
            raise UnsupportedFeature(provider, f"tools of type {tool.get('type')!r}", "tools")
        functions.append(tool["function"])
    return functions


def json_arguments(value: object) -> str:
    """Tool call arguments as OpenAI sends them: a JSON string."""
    return orjson.dumps(value if value is not None else {}).decode()


def completion_body(
    completion_id: str,
    model: str,
    *,
    text: str | None,
    tool_calls: list[dict[str, Any]],
    finish_reason: str,
    input_tokens: int,
    output_tokens: int,
) -> bytes:
    """A whole ``chat.completion`` body with one choice."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": wall_ms() // 1000,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage_object(input_tokens, output_tokens),
        }
    )


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
