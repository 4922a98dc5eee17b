"""The provider catalog and routing policy files under ``policies/``.

The catalog names each provider's endpoint, the environment variable that holds
its key, its wire format and its models with list prices. It is the user's file:
``CATALOG_FILE`` names it (default the bundled ``policies/catalog.v1.json``), and a
provider of one's own (vLLM, Ollama, Azure OpenAI, a relay) is one more entry with
its ``base_url`` and ``key_env`` (``""``: it takes no key). ``read_catalog`` checks a
file and says what is wrong with which entry (``CatalogError``). A policy file gives
the champion's utility per task and arm (provider/model).

A model's ``capabilities`` say what Symphony can serve on that arm: what the model
can do *and* its provider's adapter can map. Routing keeps only the arms whose
capabilities cover what a request needs (``proxy.adapters.features``).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"
CATALOG_FILE = POLICIES_DIR / "catalog.v1.json"

Wire = Literal["openai", "anthropic", "gemini"]

# tools: function definitions, tool calls and tool results; vision: image parts;
# json_object / json_schema: ``response_format``; logprobs: ``logprobs``/``top_logprobs``;
# multiple_choices: ``n`` > 1; stop: stop sequences; top_k: ``top_k`` sampling; audio, files:
# ``input_audio`` and ``file`` content parts.
Capability = Literal[
    "tools",
    "vision",
    "json_object",
    "json_schema",
    "logprobs",
    "multiple_choices",
    "stop",
    "top_k",
    "audio",
    "files",
]
CAPABILITIES: frozenset[str] = frozenset(get_args(Capability))


# How an OpenAI-wire provider takes its key: ``Authorization: Bearer`` (OpenAI, vLLM, most relays)
# or ``api-key`` (Azure OpenAI).
Auth = Literal["bearer", "api-key"]
# A provider's name goes into arm names (``provider/model``), URLs and Redis hash tags.
PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
KEY_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,99}")


class CatalogError(ValueError):
    """A catalog file Symphony cannot serve; the message names the file and each bad entry."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class _Entry(BaseModel):
    """A catalog entry: a misspelt field is named, not silently ignored; ``comment`` is free."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    comment: str = ""


class ModelPrice(_Entry):
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    capabilities: frozenset[Capability] = frozenset()

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1_000_000


class EmbeddingPrice(_Entry):
    """An embedding model: its list price for input and the length of its vectors."""

    input_per_mtok: float = Field(ge=0)
    dimensions: int = Field(ge=1, le=65536)

    def as_price(self) -> ModelPrice:
        """The price as a chat model's (no output tokens), for quotas and usage events."""
        return ModelPrice(input_per_mtok=self.input_per_mtok, output_per_mtok=0.0)


class Provider(_Entry):
    base_url: str
    key_env: str  # "": the provider takes no key (a local vLLM or Ollama server)
    wire: Wire
    models: dict[str, ModelPrice] = Field(min_length=1)
    # Embedding models, served by ``POST /v1/embeddings`` (the openai wire's ``{base_url}/embeddings``).
    embeddings: dict[str, EmbeddingPrice] = Field(default_factory=dict)
    auth: Auth = "bearer"
    status_url: str = ""  # the provider's public status page (evidence bundles snapshot it)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlparse(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(
                "must be an http:// or https:// URL with a host and no query, e.g. http://vllm:8000/v1"
            )
        return value

    @field_validator("key_env")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if value and not KEY_ENV_NAME.fullmatch(value):
            raise ValueError("must be empty (no key) or an environment variable name such as VLLM_API_KEY")
        return value

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        for name in value:
            if not name or name != name.strip() or any(c.isspace() for c in name) or len(name) > 200:
                raise ValueError(f"model name {name!r} must be 1 to 200 characters without spaces")
        return value

    @model_validator(mode="after")
    def _auth_fits_wire(self) -> Provider:
        if self.auth != "bearer" and self.wire != "openai":
            raise ValueError(f"auth {self.auth!r} is for the openai wire only; {self.wire} sends its own")
        if self.embeddings and self.wire != "openai":
            raise ValueError(f"embeddings are served over the openai wire only, not {self.wire}")
        return self

    @property
    def takes_key(self) -> bool:
        return bool(self.key_env)

    def simulated_base_url(self, simulator_url: str, name: str) -> str:
        """Where the simulator serves this provider: ``{simulator}/{name}`` + the real base path.

        e.g. ``http://127.0.0.1:8701/anthropic/v1`` or ``…/gemini/v1beta`` or ``…/perplexity``.
        """
        return f"{simulator_url.rstrip('/')}/{name}{urlparse(self.base_url).path.rstrip('/')}"

    def simulated_status_url(self, simulator_url: str, name: str) -> str:
        """Where the simulator serves this provider's status page: ``{simulator}/{name}/status``."""
        return f"{simulator_url.rstrip('/')}/{name}/status"


class Catalog(_Entry):
    version: str = Field(min_length=1)
    providers: dict[str, Provider] = Field(min_length=1)

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, value: dict[str, Provider]) -> dict[str, Provider]:
        for name in value:
            if not PROVIDER_NAME.fullmatch(name):
                raise ValueError(
                    f"provider name {name!r} must be lower-case letters, digits, '-' or '_' (at most 40)"
                )
        return value

    def arm(self, provider: str, model: str) -> ModelPrice:
        return self.providers[provider].models[model]

    @property
    def arms(self) -> list[str]:
        """Every arm as ``provider/model``, in the catalog's order."""
        return [f"{name}/{model}" for name, spec in self.providers.items() for model in spec.models]

    def embedding_arms(self, model: str) -> list[tuple[str, str, EmbeddingPrice]]:
        """Every (provider, model, price) serving embedding model ``model`` (plain or ``provider/model``)."""
        provider, _, name = model.partition("/")
        if name and provider in self.providers:
            price = self.providers[provider].embeddings.get(name)
            return [(provider, name, price)] if price is not None else []
        return [
            (p, model, spec.embeddings[model])
            for p, spec in self.providers.items()
            if model in spec.embeddings
        ]

    def has(self, provider: str, model: str) -> bool:
        spec = self.providers.get(provider)
        return spec is not None and model in spec.models

    def find_model(self, model: str) -> tuple[str, str] | None:
        """The (provider, model) arm that ``model`` names, as ``model`` or ``provider/model``.

        A model's own name may hold a ``/`` (vLLM serves ``meta-llama/Llama-3.1-8B-Instruct``):
        ``provider/`` is read off the front only when it names a provider of the catalog.
        """
        provider, _, name = model.partition("/")
        if name and provider in self.providers:
            return (provider, name) if self.has(provider, name) else None
        return next(((p, model) for p, spec in self.providers.items() if model in spec.models), None)


class UtilityWeights(_Frozen):
    """How one task values an answer: utility = quality * q + cost * (1 - cost / cost_scale_usd)
    + latency * (1 - latency / latency_scale_s), each ratio capped at 1, so utility lies in [0, 1].

    The three weights sum to 1. A request that failed (no attempt answered) has utility 0.
    """

    quality: float = Field(default=0.7, ge=0)
    cost: float = Field(default=0.2, ge=0)
    latency: float = Field(default=0.1, ge=0)
    cost_scale_usd: float = Field(default=0.01, gt=0)
    latency_scale_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _weights_sum_to_one(self) -> UtilityWeights:
        total = self.quality + self.cost + self.latency
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"utility weights quality + cost + latency must sum to 1, not {total:g}")
        return self


class PromotionCriteria(_Frozen):
    """When the learner may propose a challenger (``learner.promotion``); the SLOs each window must meet."""

    min_uplift: float = Field(default=0.10, ge=0)
    consecutive_windows: int = Field(default=2, ge=1)
    min_samples: int = Field(default=1000, ge=1)
    slo_p95_ms: float = Field(default=5000.0, gt=0)
    slo_error_rate: float = Field(default=0.02, ge=0, le=1)


class Policy(_Frozen):
    """The champion routing policy: a utility in [0, 1] per arm (``provider/model``) for each task.

    The proxy serves it as a softmax of utility / ``temperature`` over the arms left
    after filtering, mixed with ``exploration`` spread evenly over them so that every
    candidate keeps a non-zero serving probability. Tasks without their own table use
    ``default``; an arm missing from a table has utility 0.
    """

    name: str
    version: str
    temperature: float = Field(gt=0)
    exploration: float = Field(default=0.05, ge=0, lt=1)
    tasks: dict[str, dict[str, float]]
    # How each task values quality, cost and latency (``default`` for tasks without their own).
    utility: dict[str, UtilityWeights] = Field(default_factory=lambda: {"default": UtilityWeights()})
    promotion: PromotionCriteria = Field(default_factory=PromotionCriteria)

    @model_validator(mode="after")
    def _has_default(self) -> Policy:
        if "default" not in self.tasks:
            raise ValueError(f"policy {self.name} has no `default` task table")
        return self

    def utility_weights(self, task: str) -> UtilityWeights:
        return self.utility.get(task) or self.utility.get("default") or UtilityWeights()

    def utilities(self, task: str) -> dict[str, float]:
        """The utility table for ``task`` (``default`` when it has none of its own)."""
        return self.tasks.get(task) or self.tasks["default"]

    @property
    def arms(self) -> set[str]:
        """Every arm any task table names."""
        return {arm for table in self.tasks.values() for arm in table}


def resolve_policy_path(path: Path) -> Path:
    """``path`` as given if it exists, else under the repository (``policies/…``) or ``policies/``."""
    if path.is_absolute() or path.exists():
        return path
    for base in (POLICIES_DIR.parent, POLICIES_DIR):
        if (base / path).exists():
            return base / path
    raise FileNotFoundError(
        f"policy file {path} not found (looked in ., {POLICIES_DIR.parent}, {POLICIES_DIR})"
    )


def read_catalog(path: Path) -> Catalog:
    """Read and check a catalog file; ``CatalogError`` names the file and every bad entry."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CatalogError(f"catalog {path}: cannot read it ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"catalog {path}: not JSON ({exc})") from None
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {_entry(error['loc'])}: {error['msg']}{_given(error['input'])}" for error in exc.errors()
        ]
        count = f"{len(lines)} bad {'entry' if len(lines) == 1 else 'entries'}"
        raise CatalogError(f"catalog {path} has {count}:\n" + "\n".join(lines)) from None


def _given(value: object) -> str:
    """The bad value itself, when it is short enough to show."""
    if isinstance(value, str | int | float) and not isinstance(value, bool) and len(str(value)) <= 80:
        return f" (given {value!r})"
    return ""


def _entry(loc: tuple[int | str, ...]) -> str:
    """Where an error is, as the file's path to it: ``providers.relay.models.gpt-x.input_per_mtok``."""
    return ".".join(str(part) for part in loc) or "the top level"


@cache
def load_catalog(path: Path = CATALOG_FILE) -> Catalog:
    """The catalog at ``path`` as it was on first read (the proxy reloads ``CATALOG_FILE`` itself)."""
    return read_catalog(path)


def load_policy(path: Path, catalog: Catalog) -> Policy:
    """Read a policy file and check every arm it names is ``provider/model`` in the catalog."""
    policy = Policy.model_validate(json.loads(path.read_text()))
    for arm in sorted(policy.arms):
        provider, _, model = arm.partition("/")
        if not catalog.has(provider, model):
            raise ValueError(f"policy {path}: arm {arm} is not in the catalog {catalog.version}")
    return policy
