"""Tables for people: numbers shown by their magnitude, not cut to two decimals."""

from __future__ import annotations

import pytest

from cli.report import format_number, render_table


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0, "0"),
        (0.0000456, "0.0000456"),
        (0.000123456, "0.0001235"),
        (0.0125, "0.0125"),
        (-0.0125, "-0.0125"),
        (1.5, "1.5"),
        (2.0, "2"),
        (9.99996, "10"),
        (153.24, "153.2"),
        (1234.56, "1,235"),
        (1234567.8, "1,234,568"),
        (1.23e-8, "1.230e-08"),
    ],
)
def test_a_number_keeps_four_significant_digits(value: float, shown: str) -> None:
    assert format_number(value) == shown


def test_a_small_cost_is_not_shown_as_zero() -> None:
    table = render_table(
        ("model", "cost_usd", "p50_ms"), [("gpt-4o-mini", 0.000045, 153.25), ("gpt-4o", 0.0021, 98.0)]
    )
    assert [line.split() for line in table.splitlines()[2:]] == [
        ["gpt-4o-mini", "0.000045", "153.2"],
        ["gpt-4o", "0.0021", "98"],
    ]
