"""What a simulated model says and how many tokens it counts.

Token accounting is deterministic and checkable by a client:

- input tokens: for each message ``MESSAGE_OVERHEAD_TOKENS`` plus ``ceil(chars / 4)``
  of its text, plus ``REPLY_PRIMING_TOKENS`` for the reply;
- output tokens: one word is one token. The number of words is drawn per request
  from the model's range (``OUTPUT_WORDS``) and capped by ``max_tokens``; the
  answer is those words joined by single spaces, so ``len(content.split())``
  equals the reported ``completion_tokens``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

MESSAGE_OVERHEAD_TOKENS = 3
REPLY_PRIMING_TOKENS = 3
CHARS_PER_TOKEN = 4

FinishReason = Literal["stop", "length"]

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
    """The prompt's token count, from each message's ``content``."""
    total = REPLY_PRIMING_TOKENS
    for content in contents:
        total += MESSAGE_OVERHEAD_TOKENS + math.ceil(len(text_of(content)) / CHARS_PER_TOKEN)
    return total


@dataclass(frozen=True)
class Completion:
    """One planned answer: its words (one token each) and why it ended."""

    words: tuple[str, ...]
    finish_reason: FinishReason
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return len(self.words)

    @property
    def content(self) -> str:
        return " ".join(self.words)


def plan_completion(
    rng: random.Random,
    provider: str,
    model: str,
    contents: Iterable[object],
    max_tokens: int | None,
) -> Completion:
    """Draw the answer's length from the model's range, cap it, and pick its words."""
    low, high = OUTPUT_WORDS.get((provider, model), DEFAULT_OUTPUT_WORDS)
    wanted = rng.randint(low, high)
    finish: FinishReason = "stop"
    if max_tokens is not None and wanted > max_tokens:
        wanted, finish = max_tokens, "length"
    words = tuple(rng.choices(VOCABULARY, k=wanted))
    return Completion(words=words, finish_reason=finish, prompt_tokens=count_input_tokens(contents))
