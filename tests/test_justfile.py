"""The justfile as an operator meets it: `--help` on a recipe without arguments, Ctrl-C on `just up`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.stackutil import processes_of, stack_env, wait_until_up

ROOT = Path(__file__).resolve().parent.parent
JUST = ROOT / ".venv" / "bin" / "just"


def _just(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(JUST), *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_check_help_prints_usage_and_exits_0() -> None:
    result = _just("check", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: just check") and "mypy" in result.stdout


def test_check_refuses_other_arguments() -> None:
    result = _just("check", "--fix")
    assert result.returncode != 0 and "takes no arguments" in result.stderr


def test_ctrl_c_on_just_up_stops_the_stack_without_an_error(tmp_path: Path) -> None:
    stack = stack_env(tmp_path)
    stack.var_dir.mkdir()
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        # its own process group, as a terminal's foreground job: Ctrl-C signals the whole group
        process = subprocess.Popen(
            [str(JUST), "--justfile", str(ROOT / "justfile"), "up"],
            cwd=tmp_path,
            env=stack.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_up(log, process, stack)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
    said = log.read_text()
    assert "error" not in said.split("Symphony is up.")[-1].lower(), said
    deadline = time.monotonic() + 10
    while processes_of(stack.var_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(stack.var_dir) == []
