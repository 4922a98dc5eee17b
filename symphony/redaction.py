"""Secrets and personal data out of text, by value and by pattern: what an evidence bundle may hold.

The proxy's scrubber (``proxy.edge.scrub``) masks the keys it holds and app keys in what a
client or a log sees. Evidence leaves the system (a ticket, a release asset), so it is
redacted harder, by a ``Redactor``:

- **known values**: the provider keys, control-plane tokens and any other secret the caller
  holds, wherever they appear (longest first, so a key never leaves its own suffix behind);
- **key formats** (``KEY_PATTERNS``): every provider's published key shape, so a key the
  process does not hold (a client's own, a rotated one) goes too;
- **credentials in place**: ``Bearer <token>`` and ``Basic <token>``, and the value of any
  header named in ``SECRET_HEADERS``;
- **personal data**: e-mail addresses, phone numbers (a leading ``+`` or separators between
  digit groups: a bare run of digits is a timestamp or an id, not a phone), card numbers
  (13 to 19 digits, spaces or dashes allowed, first digit 3 to 6, and a valid Luhn sum);
- **operator patterns** (``EVIDENCE_REDACT_PATTERNS``): regular expressions of the
  deployment's own (customer ids, internal hosts).

Every match becomes ``[REDACTED:<kind>]`` so a reader knows what was there; an app key
keeps its public prefix (``sk-sym-<prefix>-[REDACTED:app_key]``), which names the app.

>>> r = Redactor(secrets=["held-secret-value-1234"])
>>> r.text("key=held-secret-value-1234 mail ops@example.com card 4111 1111 1111 1111")
'key=[REDACTED:secret] mail [REDACTED:email] card [REDACTED:card]'
>>> r.text("Authorization: Bearer abc.def.ghi")
'Authorization: Bearer [REDACTED:bearer]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MIN_SECRET_CHARS = 8

# sk-sym-<8-char public prefix>-<secret>: Symphony's own app keys (symphony.app_keys).
APP_KEY = re.compile(r"(sk-sym-[A-Za-z0-9]{8}-)[A-Za-z0-9_-]{8,}")
_KEY_CHARS = r"[A-Za-z0-9_\-]"
# A provider's masked echo of a key (``sk-proj-****abcd``, ``sk-…abcd``): its visible ends are a real key's.
MASKED_KEY = re.compile(
    rf"{_KEY_CHARS}*\*{{3,}}{_KEY_CHARS}*(?:\*+{_KEY_CHARS}*)*"
    rf"|{_KEY_CHARS}{{3,}}(?:\.{{3}}|…){_KEY_CHARS}{{3,}}"
)

# Each provider's key shapes, as the providers publish or issue them. Order matters only for the kind named.
KEY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # Anthropic: sk-ant-api03-…, sk-ant-admin01-… (about 100 characters).
    ("anthropic_key", re.compile(r"sk-ant-[A-Za-z0-9]+-[A-Za-z0-9_\-]{16,}")),
    # OpenAI: sk-proj-…, sk-svcacct-…, sk-admin-…, legacy sk-<48>; DeepSeek: sk-<32 hex>.
    # Any other sk-… of 20+ key characters too (not Symphony's own, handled above).
    ("openai_key", re.compile(r"sk-(?!sym-)(?:[a-z]+-)?[A-Za-z0-9_\-]{20,}")),
    # Google (Gemini): AIza + 35 characters.
    ("google_key", re.compile(r"AIza[0-9A-Za-z_\-]{35}")),
    # xAI (Grok): xai-<80>; Perplexity: pplx-<48>.
    ("xai_key", re.compile(r"xai-[A-Za-z0-9_\-]{20,}")),
    ("perplexity_key", re.compile(r"pplx-[A-Za-z0-9_\-]{20,}")),
    # GitHub tokens (ticket credentials): ghp_, gho_, ghu_, ghs_, ghr_, github_pat_.
    ("github_token", re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    # Atlassian API tokens (ticket credentials): ATATT3…
    ("atlassian_token", re.compile(r"ATATT[A-Za-z0-9_\-=]{20,}")),
)
# Venice issues keys with no published prefix: they go by value (the key the proxy holds) and by place
# (an Authorization header, a Bearer token).

_CREDENTIAL = re.compile(r"\b(Bearer|Basic)\s+(?!sk-sym-)[A-Za-z0-9._~+/=\-]{6,}", re.IGNORECASE)
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "cookie",
        "set-cookie",
        "x-symphony-token",
    }
)
EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+(?:@|\s?\[at\]\s?)[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# +<country> then groups, or (area) / area- then groups; separators required between groups.
PHONE = re.compile(
    r"(?<![\w.+])(?:\+\d{1,3}[\s.\-]?(?:\(\d{1,4}\)[\s.\-]?)?\d{2,4}(?:[\s.\-]?\d{2,4}){1,4}"
    r"|\(\d{2,4}\)\s?\d{3,4}[\s.\-]\d{3,4}"
    r"|\d{3}[.\-\s]\d{3}[.\-\s]\d{4})(?![\w])"
)
# Not after a "." nor before ".<digit>": the digits of a decimal fraction are no card.
CARD = re.compile(r"(?<![\w.])[3-6]\d(?:[ \-]?\d){11,17}(?![\w]|\.\d)")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum over a string of digits (what every card number satisfies)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return _mask("card") if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group()


def compile_operator_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """The operator's patterns compiled, or ``ValueError`` naming the one that does not compile."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"redaction pattern {pattern!r} does not compile: {exc}") from None
        if compiled[-1].match(""):
            raise ValueError(f"redaction pattern {pattern!r} matches the empty string")
    return tuple(compiled)


@dataclass
class Redactor:
    secrets: Iterable[str] = ()
    operator_patterns: Iterable[str] = ()
    _values: list[str] = field(init=False, default_factory=list)
    _operator: tuple[re.Pattern[str], ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        values = {s for s in self.secrets if len(s) >= MIN_SECRET_CHARS}
        self._values = sorted(values, key=len, reverse=True)
        self._operator = compile_operator_patterns(self.operator_patterns)

    def text(self, text: str) -> str:
        for secret in self._values:
            text = text.replace(secret, _mask("secret"))
        text = APP_KEY.sub(rf"\g<1>{_mask('app_key')}", text)
        for kind, pattern in KEY_PATTERNS:
            text = pattern.sub(_mask(kind), text)
        text = MASKED_KEY.sub(_mask("masked_key"), text)
        text = _CREDENTIAL.sub(lambda m: f"{m.group(1)} {_mask(m.group(1).lower())}", text)
        for pattern in self._operator:
            text = pattern.sub(_mask("operator"), text)
        text = EMAIL.sub(_mask("email"), text)
        text = CARD.sub(_card, text)
        return PHONE.sub(_mask("phone"), text)

    def bytes(self, data: bytes) -> bytes:
        return self.text(data.decode("utf-8", "replace")).encode()

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Headers with every credential header's value masked whole, the rest redacted as text."""
        return {
            name: _mask("header") if name.lower() in SECRET_HEADERS else self.text(value)
            for name, value in headers.items()
        }
