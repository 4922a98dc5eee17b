"""The command line builds only the command it runs, so a part of the stack holds no other command's
libraries (the proxy's process was 187 MiB resident with them, 96 without)."""

from __future__ import annotations

import subprocess
import sys

# What some commands' modules bring: the scheduler's MILP, ClickHouse and Arrow, the dataflow, evidence pages.
HEAVY = ("numpy", "scipy", "pyarrow", "clickhouse_connect", "bytewax", "lxml", "trafilatura")

PROBE = """
import sys
from cli.main import build_parser, _command_in
args = build_parser(_command_in(sys.argv[1:])).parse_args(sys.argv[1:])
print(",".join(name for name in {heavy!r} if name in sys.modules))
"""


def loaded_by(*argv: str) -> list[str]:
    probe = PROBE.format(heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.strip().split(",") if name]


def test_the_proxys_process_loads_no_other_commands_libraries() -> None:
    assert loaded_by("proxy") == []


def test_a_command_that_needs_them_still_gets_them() -> None:
    assert {"pyarrow", "clickhouse_connect"} <= set(loaded_by("scheduler-weeks", "--json"))
