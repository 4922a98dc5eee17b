"""``symphony models``: every model of the catalog (``CATALOG_FILE``), served or not, and why not.

A model is served when its provider is reachable by the proxy: the simulator stands
in for it (``SIMULATED_PROVIDERS``), its key is set (``<key_env>`` or ``<key_env>_FILE``),
or it takes no key (``key_env`` empty: a local vLLM or Ollama server). With ``--needs``
(capabilities a request would use, e.g. ``tools,json_schema``), a model that lacks one is
not served for such requests, and the row says which it lacks. Read from the same
files and environment the proxy starts with; the proxy serves a changed catalog within a
second, so this is what it serves now.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cli import report
from symphony.catalog import CAPABILITIES, Catalog, Provider, load_catalog
from symphony.settings import Settings, SettingsError, load_provider_keys

COLUMNS = (
    "model",
    "served",
    "why",
    "wire",
    "input_per_mtok",
    "output_per_mtok",
    "capabilities",
    "champion_tasks",
)


@dataclass(frozen=True, slots=True)
class ModelRow:
    arm: str  # provider/model
    served: bool
    why: str  # how it is reached, or why it is not served
    wire: str
    input_per_mtok: float
    output_per_mtok: float
    capabilities: tuple[str, ...]
    champion_tasks: tuple[str, ...]  # the champion's tasks that give it a utility above 0

    def cells(self) -> list[Any]:
        return [
            self.arm,
            "yes" if self.served else "no",
            self.why,
            self.wire,
            self.input_per_mtok,
            self.output_per_mtok,
            ",".join(self.capabilities) or "-",
            ",".join(self.champion_tasks) or "-",
        ]


def parse_needs(text: str) -> frozenset[str]:
    """A comma list of capabilities; ``argparse`` turns the ValueError into a usage error."""
    needs = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(needs - CAPABILITIES)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown capabilities {unknown}; known: {', '.join(sorted(CAPABILITIES))}"
        )
    return needs


def _reach(
    name: str, spec: Provider, settings: Settings, keyed: set[str], *, up_simulates: bool
) -> tuple[bool, str]:
    """Whether the proxy can call ``name``, and how (or why not), in words."""
    if settings.simulated(name):
        return True, "the simulator stands in (SIMULATED_PROVIDERS)"
    if name in keyed:
        return True, f"key from {spec.key_env}"
    if not spec.takes_key:
        return True, f"no key needed, at {spec.base_url}"
    why = f"no key: set {spec.key_env} or {spec.key_env}_FILE"
    if up_simulates and name in load_catalog().providers:
        why += " (`just up` has the simulator stand in)"
    return False, why


def model_rows(
    catalog: Catalog,
    settings: Settings,
    environ: Mapping[str, str],
    *,
    needs: frozenset[str] = frozenset(),
    champion_tables: Mapping[str, Mapping[str, float]] | None = None,
) -> list[ModelRow]:
    """One row per catalog model, in the catalog's order."""
    try:
        keyed = set(load_provider_keys(catalog, environ))
    except SettingsError:  # an unreadable key file: that provider has no key
        keyed = {
            name for name, spec in catalog.providers.items() if spec.takes_key and environ.get(spec.key_env)
        }
    # Unless SIMULATED_PROVIDERS is set, `symphony up` has the simulator stand in for every keyless
    # bundled provider (cli.supervisor): said in the row, which describes a proxy started alone.
    up_simulates = "SIMULATED_PROVIDERS" not in environ
    rows = []
    for name, spec in catalog.providers.items():
        served, why = _reach(name, spec, settings, keyed, up_simulates=up_simulates)
        for model, price in spec.models.items():
            arm = f"{name}/{model}"
            lacks = sorted(needs - price.capabilities)
            tasks = tuple(t for t, table in (champion_tables or {}).items() if table.get(arm, 0.0) > 0)
            rows.append(
                ModelRow(
                    arm,
                    served and not lacks,
                    f"lacks {', '.join(lacks)}" if served and lacks else why,
                    spec.wire,
                    price.input_per_mtok,
                    price.output_per_mtok,
                    tuple(sorted(price.capabilities)),
                    tasks,
                )
            )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--needs",
        type=parse_needs,
        default=frozenset(),
        metavar="CAPS",
        help="only models with these capabilities count as served; a comma list of: "
        + ", ".join(sorted(CAPABILITIES)),
    )
    parser.add_argument("--json", action="store_true", help="print rows as JSON")


def render(rows: list[ModelRow], *, as_json: bool) -> str:
    if as_json:
        import json

        return json.dumps(
            [
                {
                    "model": row.arm,
                    "served": row.served,
                    "why": row.why,
                    "wire": row.wire,
                    "input_per_mtok": row.input_per_mtok,
                    "output_per_mtok": row.output_per_mtok,
                    "capabilities": list(row.capabilities),
                    "champion_tasks": list(row.champion_tasks),
                }
                for row in rows
            ],
            indent=2,
        )
    return report.render_table(COLUMNS, [row.cells() for row in rows])
