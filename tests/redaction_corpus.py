"""A seeded corpus of secrets and personal data, in several spellings each: what no evidence may hold.

Shared by the redaction test and the bundle tests (which plant it in requests, responses, headers
and the status page, then look for every item in every file of the bundle).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"


@dataclass(frozen=True)
class Item:
    kind: str  # the [REDACTED:<kind>] it must become (several kinds are accepted where noted)
    value: str


def _draw(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def corpus(seed: int = 18) -> list[Item]:
    rng = random.Random(seed)
    hexd = "0123456789abcdef"
    items = [
        Item("openai_key", "sk-proj-" + _draw(rng, URLSAFE, 156)),
        Item("openai_key", "sk-svcacct-" + _draw(rng, URLSAFE, 74)),
        Item("openai_key", "sk-admin-" + _draw(rng, URLSAFE, 60)),
        Item("openai_key", "sk-" + _draw(rng, ALNUM, 20) + "T3BlbkFJ" + _draw(rng, ALNUM, 20)),
        Item("openai_key", "sk-" + _draw(rng, hexd, 32)),  # DeepSeek's shape
        Item("anthropic_key", "sk-ant-api03-" + _draw(rng, URLSAFE, 93) + "AA"),
        Item("anthropic_key", "sk-ant-admin01-" + _draw(rng, URLSAFE, 93)),
        Item("google_key", "AIza" + _draw(rng, URLSAFE, 35)),
        Item("xai_key", "xai-" + _draw(rng, ALNUM, 80)),
        Item("perplexity_key", "pplx-" + _draw(rng, ALNUM, 48)),
        Item("github_token", "ghp_" + _draw(rng, ALNUM, 36)),
        Item("github_token", "github_pat_" + _draw(rng, ALNUM + "_", 82)),
        Item("atlassian_token", "ATATT3xFfGF0" + _draw(rng, URLSAFE, 180)),
        Item("email", "jane.doe+billing@example.com"),
        Item("email", "OPS_Team@sub.example.co.uk"),
        Item("email", "j.smith [at] example.org"),
        Item("phone", "+1 415 555 0132"),
        Item("phone", "+44 20 7946 0958"),
        Item("phone", "(415) 555-0199"),
        Item("phone", "415-555-0173"),
        Item("phone", "415.555.0144"),
        Item("phone", "+4915123456789"),
        Item("card", "4111 1111 1111 1111"),
        Item("card", "5500-0000-0000-0004"),
        Item("card", "340000000000009"),
        Item("card", "6011000990139424"),
    ]
    return items


# Secrets the deployment holds (by value): a Venice key has no published prefix, a control-plane token is
# token_urlsafe(32). Each must go although no pattern knows its shape.
def held_secrets(seed: int = 18) -> dict[str, str]:
    rng = random.Random(seed + 1)
    return {
        "venice_key": _draw(rng, URLSAFE, 48),
        "admin_token": _draw(rng, URLSAFE, 43),
        "analyst_token": _draw(rng, URLSAFE, 43),
        "simulator_key": "sim-" + _draw(rng, ALNUM, 24),
    }


OPERATOR_PATTERN = r"CUST-\d{6}"
OPERATOR_VALUE = "CUST-204518"


def app_key(seed: int = 18) -> tuple[str, str]:
    """An app key and its public prefix (the prefix may stay; the rest may not)."""
    rng = random.Random(seed + 2)
    prefix = _draw(rng, ALNUM, 8)
    return f"sk-sym-{prefix}-{_draw(rng, URLSAFE, 43)}", f"sk-sym-{prefix}-"


def everything(seed: int = 18) -> list[str]:
    """Every value no bundle file may contain."""
    key, _ = app_key(seed)
    return [i.value for i in corpus(seed)] + list(held_secrets(seed).values()) + [OPERATOR_VALUE, key]


def planted_text(seed: int = 18) -> str:
    """Every item in one text, in the places they turn up: prose, JSON strings, header lines."""
    key, _ = app_key(seed)
    lines = [f"item {n}: {item.value}." for n, item in enumerate(corpus(seed))]
    lines += [f'{{"token": "{value}"}}' for value in held_secrets(seed).values()]
    lines += [f"Authorization: Bearer {key}", f"customer {OPERATOR_VALUE} called"]
    return "\n".join(lines)
