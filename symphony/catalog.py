"""The provider catalog and routing policy files under ``policies/``.

The catalog names each provider's real endpoint, the environment variable that
holds its key, its wire format and its models with list prices. A policy file
names the arms (provider/model) the champion serves and their weights.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, model_validator

POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"
CATALOG_FILE = POLICIES_DIR / "catalog.v1.json"

Wire = Literal["openai", "anthropic", "gemini"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ModelPrice(_Frozen):
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1_000_000


class Provider(_Frozen):
    base_url: str
    key_env: str
    wire: Wire
    models: dict[str, ModelPrice]

    def simulated_base_url(self, simulator_url: str, name: str) -> str:
        """Where the simulator serves this provider: ``{simulator}/{name}`` + the real base path.

        e.g. ``http://127.0.0.1:8701/anthropic/v1`` or ``…/gemini/v1beta`` or ``…/perplexity``.
        """
        return f"{simulator_url.rstrip('/')}/{name}{urlparse(self.base_url).path.rstrip('/')}"


class Catalog(_Frozen):
    version: str
    providers: dict[str, Provider]

    def arm(self, provider: str, model: str) -> ModelPrice:
        return self.providers[provider].models[model]

    def has(self, provider: str, model: str) -> bool:
        spec = self.providers.get(provider)
        return spec is not None and model in spec.models

    def find_model(self, model: str) -> tuple[str, str] | None:
        """The (provider, model) arm that ``model`` names, as ``model`` or ``provider/model``."""
        provider, _, name = model.rpartition("/")
        if provider:
            return (provider, name) if self.has(provider, name) else None
        return next(((p, model) for p, spec in self.providers.items() if model in spec.models), None)


class Arm(_Frozen):
    provider: str
    model: str
    weight: float = Field(gt=0)

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model}"


class Policy(_Frozen):
    name: str
    version: str
    arms: list[Arm] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_arms(self) -> Policy:
        names = [arm.name for arm in self.arms]
        if len(names) != len(set(names)):
            raise ValueError(f"policy {self.name} lists an arm twice: {names}")
        return self


@cache
def load_catalog(path: Path = CATALOG_FILE) -> Catalog:
    return Catalog.model_validate(json.loads(path.read_text()))


def load_policy(path: Path, catalog: Catalog) -> Policy:
    """Read a policy file and check every arm exists in the catalog."""
    policy = Policy.model_validate(json.loads(path.read_text()))
    for arm in policy.arms:
        if not catalog.has(arm.provider, arm.model):
            raise ValueError(f"policy {path}: arm {arm.name} is not in the catalog {catalog.version}")
    return policy
