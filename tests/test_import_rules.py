"""The import rules of docs/architecture.md, read from every module's syntax tree.

Imports point down: ``symphony/`` (the shared core) imports no other package of the
project; the proxy never imports the control plane, and the control plane never imports
the proxy; the simulator imports only the shared core; only ``cli/`` imports everything.
Every import counts, wherever it stands (inside a function, under ``TYPE_CHECKING``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT = ("symphony", "simulator", "proxy", "dataflows", "sinks", "learner", "scheduler", "cli")
CONTROL_PLANE = ("dataflows", "sinks", "learner", "scheduler")

# package -> the project packages it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "symphony": tuple(name for name in PROJECT if name != "symphony"),
    "simulator": tuple(name for name in PROJECT if name not in ("symphony", "simulator")),
    "proxy": (*CONTROL_PLANE, "simulator", "cli"),
    **{name: ("proxy", "simulator", "cli") for name in CONTROL_PLANE},
}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """``(line, top-level package)`` of every absolute import in the module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{line} imports {imported}"
        for path in sorted((REPO / package).rglob("*.py"))
        for line, imported in imported_packages(path)
        if imported in forbidden
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_is_below_it(package: str) -> None:
    assert list((REPO / package).rglob("*.py")), f"no modules found under {package}/"
    assert violations(package, FORBIDDEN[package]) == []


def test_nothing_imports_the_cli() -> None:
    """``cli/`` is the top: no package of the project imports it (tests and benchmarks may)."""
    assert [found for package in PROJECT if package != "cli" for found in violations(package, ("cli",))] == []


def test_relative_imports_are_not_used() -> None:
    """The rules above read absolute imports; a relative one would slip past them."""
    relative = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for package in PROJECT
        for path in sorted((REPO / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == []
