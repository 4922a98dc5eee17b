"""Reports for people and machines: an aligned text table, or JSON with ``--json``."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

SIGNIFICANT = 4  # digits a float keeps in a table: 0.000123, 1.235, 153.2, 1,235 (whole digits are never cut)
SMALLEST_FIXED = -6  # below 1e-6, scientific notation: 1.230e-07


def format_number(value: float) -> str:
    """A float by its magnitude: ``SIGNIFICANT`` significant digits, thousands separated, no zeros after."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < SMALLEST_FIXED:
        return f"{value:.{SIGNIFICANT - 1}e}"
    text = f"{value:,.{max(SIGNIFICANT - 1 - magnitude, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns left-aligned for text, right-aligned for numbers."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        )

    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    if not rows:
        out.append("(no rows)")
    return "\n".join(s.rstrip() for s in out)


def render_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str, indent=2)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, as_json: bool) -> str:
    return render_json(columns, rows) if as_json else render_table(columns, rows)


def progress_printer() -> Callable[[str], None]:
    """Where a long command says what it is doing: stderr, so stdout carries only its result."""

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    return say


@contextmanager
def native_output_to_stderr() -> Iterator[None]:
    """While inside, what native code prints on file descriptor 1 goes to stderr (HiGHS prints debug
    lines to it now and then), so that stdout carries only the command's result, table or JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
