"""What a canonical (OpenAI-format) request needs from the arm that serves it, and the refusals.

``required_capabilities`` reads a request body and names the catalog capabilities
it uses (``symphony.catalog.Capability``); routing keeps only the arms whose
capabilities cover them, and ``Adapter.request`` calls ``check_capabilities`` as the
last guard, so a feature an arm cannot serve is refused with a 400 that names it
instead of being dropped on the way. ``refuse_set`` and ``refuse_unknown`` refuse the
parameters a wire format has no equivalent for or does not know (``UnsupportedFeature``).

The body has been validated by the inbound endpoint, but this module still reads it
defensively: a shape it does not expect needs nothing rather than crashing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class UnsupportedFeature(Exception):
    """The request uses something this provider cannot do; answered as a 400 naming it."""

    def __init__(self, provider: str, feature: str, param: str | None = None) -> None:
        super().__init__(f"{provider} cannot serve this request: {feature} is not supported by {provider}.")
        self.provider = provider
        self.feature = feature
        self.param = param


# capability -> (what the client asked for, in words; the request parameter that asks for it)
FEATURES: dict[str, tuple[str, str]] = {
    "tools": ("tool calling (tools, tool calls and tool results)", "tools"),
    "vision": ("image input (image_url content parts)", "messages"),
    "audio": ("audio input (input_audio content parts)", "messages"),
    "files": ("file input (file content parts)", "messages"),
    "json_object": ("JSON mode (response_format json_object)", "response_format"),
    "json_schema": ("structured output (response_format json_schema)", "response_format"),
    "logprobs": ("log probabilities (logprobs, top_logprobs)", "logprobs"),
    "multiple_choices": ("several choices per request (n > 1)", "n"),
    "stop": ("stop sequences (stop)", "stop"),
    "top_k": ("top-k sampling (top_k)", "top_k"),
}
CAPABILITIES = frozenset(FEATURES)
# Parameters with no meaning for the answer's content: a translating adapter may leave them behind.
IGNORED_PARAMS = frozenset({"model", "stream", "stream_options", "store", "metadata", "service_tier", "user"})
_PART_CAPABILITY = {"image_url": "vision", "input_audio": "audio", "file": "files"}
_TOOL_ROLES = {"tool", "function"}


def required_capabilities(body: Mapping[str, Any]) -> set[str]:
    """The capabilities ``body`` uses, e.g. ``{"tools", "vision"}``; empty for plain text chat."""
    needed: set[str] = set()
    if body.get("tools") or body.get("functions"):
        needed.add("tools")
    messages = body.get("messages")
    if isinstance(messages, list):
        needed |= _message_capabilities(message for message in messages if isinstance(message, dict))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        needed.add(response_format["type"])
    if body.get("logprobs") or body.get("top_logprobs") is not None:
        needed.add("logprobs")
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        needed.add("multiple_choices")
    if body.get("stop"):
        needed.add("stop")
    if body.get("top_k") is not None:
        needed.add("top_k")
    return needed


def _message_capabilities(messages: Iterable[Mapping[str, Any]]) -> set[str]:
    needed: set[str] = set()
    for message in messages:
        # A conversation that already holds tool calls or results needs a tool-capable arm.
        if message.get("role") in _TOOL_ROLES or message.get("tool_calls") or message.get("function_call"):
            needed.add("tools")
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if isinstance(kind, str) and kind in _PART_CAPABILITY:
                    needed.add(_PART_CAPABILITY[kind])
    return needed


def unsupported(provider: str, capability: str) -> UnsupportedFeature:
    """The refusal for an arm of ``provider`` that lacks ``capability``."""
    words, param = FEATURES.get(capability, (capability, capability))
    return UnsupportedFeature(provider, words, param)


def check_capabilities(provider: str, capabilities: frozenset[str], body: Mapping[str, Any]) -> None:
    """Raise ``UnsupportedFeature`` for the first capability ``body`` needs that the arm lacks."""
    missing = required_capabilities(body) - capabilities
    if missing:
        raise unsupported(provider, min(missing, key=list(FEATURES).index))


def refuse_unknown(provider: str, body: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise ``UnsupportedFeature`` for the first set parameter that is not in ``known``."""
    known = frozenset(known)
    for name, value in body.items():
        if name not in known and value is not None:
            raise UnsupportedFeature(provider, f"the `{name}` parameter", name)


def refuse_set(provider: str, body: Mapping[str, Any], names: Iterable[str]) -> None:
    """Raise for a parameter with no equivalent that is set to more than its neutral value."""
    for name in names:
        if body.get(name) not in (None, 0, 0.0, False, {}, []):
            raise UnsupportedFeature(provider, f"the `{name}` parameter", name)
