"""The README tells the truth: every setting in its settings table, no link outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from symphony.catalog import load_catalog
from symphony.settings import Settings

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def settings_table_names() -> set[str]:
    """The variables named (in backticks) in the first column of the README's settings table."""
    section = README.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cell)}


def test_every_setting_is_in_the_settings_table() -> None:
    missing = sorted(
        name.upper() for name in Settings.model_fields if name.upper() not in settings_table_names()
    )
    assert missing == [], f"settings missing from the README's settings table: {missing}"


def test_the_settings_table_names_only_settings_and_provider_keys() -> None:
    provider_keys = {spec.key_env for spec in load_catalog().providers.values()}
    known = {name.upper() for name in Settings.model_fields} | provider_keys
    assert sorted(settings_table_names() - known) == []


def test_every_link_stays_in_the_repository_and_exists() -> None:
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", README) if not re.match(r"[a-z]+://|#", t)]
    assert targets, "the README links its docs"
    for target in targets:
        path = (REPO / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(REPO), f"{target} is outside the repository"
        assert path.exists(), f"{target} does not exist"
    assert "../shared/" not in README


def _recipes() -> dict[str, str]:
    """Each justfile recipe that runs a ``symphony`` subcommand, and which (``up`` -> ``up``)."""
    justfile = (REPO / "justfile").read_text()
    recipes = {}
    for match in re.finditer(r"^([a-z][a-z0-9-]*)[^\n]*:\n((?:[ \t]+[^\n]*\n?)+)", justfile, re.M):
        called = re.search(r"\bsymphony ([a-z][a-z0-9-]*)", match.group(2))
        if called:
            recipes[match.group(1)] = called.group(1)
    return recipes


def _commands_shown() -> list[tuple[str, list[str]]]:
    """Every ``just X …`` and ``symphony X …`` the README shows: (symphony command words, its flags)."""
    recipes = _recipes()
    shown = []
    spans = re.findall(r"`([^`\n]+)`", README) + [
        line for block in re.findall(r"```sh\n(.*?)```", README, re.S) for line in block.splitlines()
    ]
    for span in spans:
        for match in re.finditer(r"\b(just|symphony) ([a-z][a-z0-9-]*)((?: [a-z][a-z-]*)?)([^`]*)", span):
            tool, name, sub, rest = match.groups()
            command = recipes.get(name) if tool == "just" else name
            if command is None:
                continue  # a recipe that runs no symphony command (test, check, bench-*)
            flags = re.findall(r"(?<![\w-])(--?[a-zA-Z][a-zA-Z0-9-]*)", rest)
            shown.append(([command, *sub.split()], flags))
    return shown


def test_every_flag_the_readme_shows_is_real() -> None:
    from cli.main import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    checked = 0
    for words, flags in _commands_shown():
        command = commands[words[0]]
        if len(words) > 1 and command._subparsers is not None:
            command = command._subparsers._group_actions[0].choices.get(words[1], command)
        known = {option for action in command._actions for option in action.option_strings}
        unknown = [flag for flag in flags if flag not in known]
        assert unknown == [], f"the README shows `{' '.join(words)}` with {unknown}, which it does not take"
        checked += len(flags)
    assert checked > 30  # the README shows many flags: the check must see them
