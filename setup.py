"""The build's one part pyproject.toml cannot say: the proxy's tracing path, compiled with mypyc.

A traced request's four spans go through these modules on the event loop (made, annotated, encoded as
OTLP, queued); compiled, they cost it about a fifth less (README, "Tracing"). mypyc compiles the same
source mypy checks, so the Python and the compiled module behave alike; ``pip install -e .`` compiles
them in place, next to their sources, and ``proxy/compiled_modules.py`` refuses to import one whose
source changed since (the fix: install again).

``SYMPHONY_PURE_PYTHON=1 pip install -e .`` leaves them Python and deletes what an earlier install
compiled: for work on these modules without a compile each time. So does a machine without a C compiler or
Python's headers, rather than failing the install (``pip install -v`` shows the warning).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

COMPILED = [
    "proxy/otlp_encoding.py",
    "proxy/recorded_spans.py",
    "proxy/span_queue.py",
    "proxy/tracing.py",
]
# Names the library the compiled modules share (mypyc's runtime): ``symphony_tracing__mypyc.*.so``.
GROUP = "symphony_tracing"


def extensions() -> list[Extension]:
    if os.environ.get("SYMPHONY_PURE_PYTHON") == "1":
        _delete_compiled()
        return []
    if not _can_compile():
        print("symphony: no C compiler or Python headers, the tracing path stays Python", file=sys.stderr)
        _delete_compiled()
        return []
    from mypyc.build import mypycify

    # Imports beyond the compiled modules are followed for their types without their errors: the build's
    # environment holds only the dependencies those types need (pyproject.toml's build-system).
    return mypycify(["--follow-imports=silent", *COMPILED], opt_level="3", group_name=GROUP)


def _can_compile() -> bool:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return shutil.which(compiler) is not None and headers.exists()


def _delete_compiled() -> None:
    built = [Path(source).with_suffix("") for source in COMPILED] + [Path(f"{GROUP}__mypyc")]
    for stem in built:
        for library in stem.parent.glob(f"{stem.name}.*.so"):
            library.unlink()


setup(ext_modules=extensions())
