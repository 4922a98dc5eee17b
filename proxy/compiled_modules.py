"""The proxy's modules compiled by mypyc (``setup.py``) against their sources.

Python imports a compiled module in preference to its source, so a source edited after ``pip install -e .``
compiled it would not run: the edit would do nothing, silently. Importing the proxy checks first and
refuses, with the fix.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent
# The suffix of the modules this interpreter builds (``.cpython-311-x86_64-linux-gnu.so``): the first listed.
COMPILED_SUFFIX = EXTENSION_SUFFIXES[0]


class StaleCompiledModule(ImportError):
    """A compiled module is older than its source."""


def stale_sources(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """The sources in ``package_dir`` changed since their compiled module was built, by name."""
    stale = []
    for source in sorted(package_dir.glob("*.py")):
        compiled = source.with_name(source.stem + COMPILED_SUFFIX)
        if compiled.exists() and source.stat().st_mtime > compiled.stat().st_mtime:
            stale.append(source.name)
    return stale


def refuse_stale(package_dir: Path = PACKAGE_DIR) -> None:
    """Raise ``StaleCompiledModule`` if a compiled module would run instead of a newer source."""
    stale = stale_sources(package_dir)
    if stale:
        raise StaleCompiledModule(
            f"{', '.join(stale)} in {package_dir} changed since mypyc compiled it, and the compiled module "
            "would run instead: run `.venv/bin/pip install -e .` to compile again, or "
            "`SYMPHONY_PURE_PYTHON=1 .venv/bin/pip install -e .` to run the sources as they are"
        )
