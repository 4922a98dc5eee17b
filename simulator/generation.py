"""What a simulated model says and how many tokens it counts, whatever the wire format.

Each wire module parses its request into a ``Prompt``; ``plan_completion`` decides the
answer (a ``Completion``); the wire module renders it. What is said:

- tool calls, when tools are offered and either ``tool_choice`` forces one (a named
  tool, or "required") or, with "auto", the last user message names tools and the
  conversation does not end with a tool result. Arguments are valid for the tool's
  parameter schema (``schema_values``). After a tool result the model answers in text.
- JSON (JSON mode, or a response schema: the schema's required keys are filled);
- otherwise words drawn from a small vocabulary.

Token accounting is deterministic and checkable by a client:

- input tokens: for each message (a system prompt counts as one)
  ``MESSAGE_OVERHEAD_TOKENS`` plus ``ceil(chars / 4)`` of its text, plus
  ``REPLY_PRIMING_TOKENS`` for the reply;
- output tokens: one word is one token, words being what ``str.split()`` finds in the
  text and in each tool call's JSON arguments. Text answers draw their length from the
  model's range (``OUTPUT_WORDS``), capped by ``max_tokens``.

Stop sequences: the model "says" the first stop sequence at a random point of a text
answer (and any stop sequence that turns up by itself counts too); the answer ends
just before it, finish reason ``stop`` with ``stop_sequence`` naming it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from simulator.schema_values import json_text, value_for

MESSAGE_OVERHEAD_TOKENS = 3
REPLY_PRIMING_TOKENS = 3
CHARS_PER_TOKEN = 4

FinishReason = Literal["stop", "length", "tool_calls"]
ToolMode = Literal["auto", "none", "required"]

# Per-model range (inclusive) of the number of words in an uncapped answer.
OUTPUT_WORDS: dict[tuple[str, str], tuple[int, int]] = {
    ("openai", "gpt-4o"): (16, 64),
    ("anthropic", "claude-sonnet-4-5"): (16, 64),
    ("perplexity", "sonar"): (12, 56),
}
DEFAULT_OUTPUT_WORDS = (8, 48)

_VOCABULARY_TEXT = (
    "the quick answer is that routing picks a model with the most utility for each request "
    "while quotas windows and budgets keep every provider inside its limits so latency stays "
    "low cost stays predictable and quality improves as the learner observes outcomes over time "
    "signal data stream event policy arm reward token window bucket"
)
VOCABULARY = tuple(_VOCABULARY_TEXT.split())
JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "maximum": 1}},
}


def text_of(content: object) -> str:
    """The text of a message's ``content``: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def count_input_tokens(contents: Iterable[object]) -> int:
    """The prompt's token count, from each message's ``content`` (or its text)."""
    total = REPLY_PRIMING_TOKENS
    for content in contents:
        total += MESSAGE_OVERHEAD_TOKENS + math.ceil(len(text_of(content)) / CHARS_PER_TOKEN)
    return total


def count_output_tokens(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class Tool:
    name: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class Prompt:
    """A request, whatever its wire format, as far as the simulated model cares."""

    model: str
    texts: tuple[str, ...]  # each message's text, a system prompt first
    last_user_text: str = ""
    after_tool_result: bool = False  # the conversation ends with a tool's result
    tools: tuple[Tool, ...] = ()
    tool_mode: ToolMode = "auto"
    forced_tool: str | None = None
    parallel_tool_calls: bool = True
    json_schema: Mapping[str, Any] | None = None  # JSON mode: the schema, or JSON_OBJECT_SCHEMA
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    stream: bool = False
    include_usage: bool = True  # OpenAI's stream_options.include_usage; other wires always report usage


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Any  # the decoded arguments (a JSON object)

    @property
    def arguments_json(self) -> str:
        return json_text(self.arguments)

    @property
    def tokens(self) -> int:
        return count_output_tokens(self.arguments_json)


@dataclass(frozen=True)
class Completion:
    """One planned answer: its words (one token each) or tool calls, and why it ended."""

    words: tuple[str, ...]
    finish_reason: FinishReason
    prompt_tokens: int
    tool_calls: tuple[ToolCall, ...] = field(default=())
    stop_sequence: str | None = None  # the stop sequence that ended the answer

    @property
    def completion_tokens(self) -> int:
        return len(self.words) + sum(call.tokens for call in self.tool_calls)

    @property
    def content(self) -> str:
        return " ".join(self.words)


def plan_completion(rng: random.Random, provider: str, prompt: Prompt) -> Completion:
    """Decide the whole answer: tool calls, JSON or words; then stop sequences and ``max_tokens``."""
    prompt_tokens = count_input_tokens(prompt.texts)
    calls = tuple(ToolCall(tool.name, value_for(tool.parameters, rng)) for tool in tools_to_call(prompt))
    if calls:
        return Completion(words=(), finish_reason="tool_calls", prompt_tokens=prompt_tokens, tool_calls=calls)
    if prompt.json_schema is not None:
        text = json_text(value_for(prompt.json_schema, rng))
    else:
        low, high = OUTPUT_WORDS.get((provider, prompt.model), DEFAULT_OUTPUT_WORDS)
        text = " ".join(rng.choices(VOCABULARY, k=rng.randint(low, high)))
        text = _say_stop_sequence(rng, text, prompt.stop)
    text, stop_sequence = _cut_at_stop(text, prompt.stop)
    words = tuple(text.split())
    finish: FinishReason = "stop"
    if prompt.max_tokens is not None and len(words) > prompt.max_tokens:
        words, finish, stop_sequence = words[: prompt.max_tokens], "length", None
    return Completion(words, finish, prompt_tokens, stop_sequence=stop_sequence)


def tools_to_call(prompt: Prompt) -> list[Tool]:
    """Which offered tools the model calls (in the order the user named them), if any."""
    if not prompt.tools or prompt.tool_mode == "none":
        return []
    if prompt.forced_tool is not None:
        return [tool for tool in prompt.tools if tool.name == prompt.forced_tool][:1]
    named = sorted(
        (tool for tool in prompt.tools if tool.name in prompt.last_user_text),
        key=lambda tool: prompt.last_user_text.index(tool.name),
    )
    if prompt.tool_mode == "required":
        chosen = named or [prompt.tools[0]]
    elif prompt.after_tool_result:
        return []
    else:
        chosen = named
    return chosen if prompt.parallel_tool_calls else chosen[:1]


def _say_stop_sequence(rng: random.Random, text: str, stop: tuple[str, ...]) -> str:
    """Insert the first stop sequence after a random word (at least one word before it)."""
    if not stop or not stop[0]:
        return text
    words = text.split()
    at = rng.randint(1, len(words))
    return " ".join([*words[:at], stop[0], *words[at:]])


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, str | None]:
    """The text before the earliest stop sequence in it, and that sequence."""
    found = [(text.find(seq), seq) for seq in stop if seq and seq in text]
    if not found:
        return text, None
    at, seq = min(found)
    return text[:at].rstrip(), seq
