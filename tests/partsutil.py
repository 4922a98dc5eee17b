"""The parts a running `symphony up` started, found in /proc: their pids and their environments."""

from __future__ import annotations

import time
from pathlib import Path

PARTS = ("sim", "engine", "proxy", "scheduler")


def _parent_and_args(pid: str) -> tuple[int, list[str]] | None:
    try:
        stat = (Path("/proc") / pid / "stat").read_text()
        cmdline = (Path("/proc") / pid / "cmdline").read_bytes()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), cmdline.decode(errors="replace").split("\0")


def part_pids(up_pid: int) -> dict[str, int]:
    """``{part: pid}`` of the live children ``python -m cli <part>`` of the `symphony up` process."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        seen = _parent_and_args(entry.name) if entry.name.isdigit() else None
        if seen is None or seen[0] != up_pid:
            continue
        args = seen[1]
        if "cli" in args and args.index("cli") + 1 < len(args):
            part = args[args.index("cli") + 1]
            if part in PARTS:
                found[part] = int(entry.name)
    return found


def wait_for_new_pid(up_pid: int, part: str, old: int, timeout: float) -> int:
    """The pid of ``part`` once `symphony up` has started it again (any pid but ``old``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = part_pids(up_pid).get(part)
        if pid is not None and pid != old:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"{part} was not restarted within {timeout}s")


def environ_of(pid: int) -> dict[str, str]:
    """The environment the process was started with."""
    raw = (Path("/proc") / str(pid) / "environ").read_bytes()
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}
