"""The tracing path runs compiled (setup.py), and a compiled module older than its source is refused."""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path

import pytest

from proxy.compiled_modules import COMPILED_SUFFIX, StaleCompiledModule, refuse_stale, stale_sources

# What a request's spans go through on the event loop: the modules the build compiles (README, "Tracing").
TRACING_PATH = ("proxy.otlp_encoding", "proxy.recorded_spans", "proxy.span_queue", "proxy.tracing")


@pytest.mark.skipif(os.environ.get("SYMPHONY_PURE_PYTHON") == "1", reason="installed as pure Python")
@pytest.mark.parametrize("name", TRACING_PATH)
def test_the_installed_tracing_path_is_compiled(name: str) -> None:
    module_file = importlib.import_module(name).__file__
    assert module_file is not None and module_file.endswith(COMPILED_SUFFIX), module_file


def _write(path: Path, seconds_ago: float) -> None:
    path.write_text("")
    stamp = time.time() - seconds_ago
    os.utime(path, (stamp, stamp))


def test_a_source_edited_after_its_compile_is_stale_and_nothing_else_is(tmp_path: Path) -> None:
    _write(tmp_path / "edited.py", seconds_ago=10)
    _write(tmp_path / f"edited{COMPILED_SUFFIX}", seconds_ago=60)
    _write(tmp_path / "compiled_since.py", seconds_ago=60)
    _write(tmp_path / f"compiled_since{COMPILED_SUFFIX}", seconds_ago=10)
    _write(tmp_path / "never_compiled.py", seconds_ago=10)

    assert stale_sources(tmp_path) == ["edited.py"]


def test_importing_with_a_stale_module_says_how_to_rebuild(tmp_path: Path) -> None:
    _write(tmp_path / "tracing.py", seconds_ago=10)
    _write(tmp_path / f"tracing{COMPILED_SUFFIX}", seconds_ago=60)

    with pytest.raises(StaleCompiledModule, match=r"tracing\.py .*`\.venv/bin/pip install -e \.`") as raised:
        refuse_stale(tmp_path)
    assert isinstance(raised.value, ImportError)

