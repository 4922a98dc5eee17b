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
