import pytest

from symphony.redaction import Redactor, luhn_ok
from tests.redaction_corpus import (
    OPERATOR_PATTERN,
    OPERATOR_VALUE,
    app_key,
    corpus,
    everything,
    held_secrets,
    planted_text,
)


def redactor() -> Redactor:
    return Redactor(secrets=held_secrets().values(), operator_patterns=[OPERATOR_PATTERN])


@pytest.mark.parametrize("item", corpus(), ids=lambda i: f"{i.kind}:{i.value[:12]}")
@pytest.mark.parametrize("spelling", ["{v}", '"{v}"', "x={v};", "<td>{v}</td>", "({v})", "{v}\n"])
def test_every_format_in_every_spelling_becomes_its_mask(item, spelling):
    text = spelling.format(v=item.value)
    out = redactor().text(text)
    assert item.value not in out
    assert f"[REDACTED:{item.kind}]" in out
    assert out == spelling.format(v=f"[REDACTED:{item.kind}]")


def test_held_secrets_go_by_value_where_no_pattern_knows_them():
    out = redactor().text(planted_text())
    for value in everything():
        assert value not in out


def test_an_app_key_keeps_its_public_prefix():
    key, prefix = app_key()
    assert redactor().text(f"key {key} used") == f"key {prefix}[REDACTED:app_key] used"


def test_bearer_and_header_values():
    r = redactor()
    assert r.text("authorization: bearer abcdef123456") == "authorization: bearer [REDACTED:bearer]"
    headers = r.headers({"Authorization": "Bearer x", "x-goog-api-key": "k", "x-request-id": "req_1"})
    assert headers == {
        "Authorization": "[REDACTED:header]",
        "x-goog-api-key": "[REDACTED:header]",
        "x-request-id": "req_1",
    }


def test_operator_pattern_and_bad_patterns():
    assert redactor().text(f"id {OPERATOR_VALUE}") == "id [REDACTED:operator]"
    with pytest.raises(ValueError, match="does not compile"):
        Redactor(operator_patterns=["(unclosed"])
    with pytest.raises(ValueError, match="empty string"):
        Redactor(operator_patterns=["x*"])


@pytest.mark.parametrize(
    "text",
    [
        '"ts": 1764614400000',  # epoch ms: a bare digit run is no phone, and starts with 1: no card
        "2026-12-01T19:39:26.123Z",
        "01JDQ4Z8X3W6K9M2N5P7R1T4V8",  # a ULID
        "4bf92f3577b34da6a3ce929d0e0e4736",  # a trace id
        '"cost_usd": 0.000123, "latency_ms": 5012.5',
        "4111 1111 1111 1112",  # fails Luhn
        "0.3333333333333333 and 5.4111111111111111",  # decimal fractions
        "gpt-4o-mini and claude-3-5-haiku-latest",
        "http://127.0.0.1:8701/openai/v1/chat/completions",
        "x-ratelimit-remaining-requests: 4999",
    ],
)
def test_ordinary_values_stay(text):
    assert redactor().text(text) == text


def test_luhn_against_known_numbers():
    # Published test numbers (valid) and each with its last digit changed (invalid).
    for number in ["4111111111111111", "5500000000000004", "340000000000009", "6011000990139424"]:
        assert luhn_ok(number)
        assert not luhn_ok(number[:-1] + str((int(number[-1]) + 1) % 10))
