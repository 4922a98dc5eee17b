"""One adapter per candidate provider, its class picked by the catalog's ``wire`` from a table.

A provider is a candidate when it has a key, or takes none (its catalog ``key_env`` is
empty: a local vLLM or Ollama server); it is then called at its ``base_url``. It is also
one when the simulator stands in for it (``settings.simulated``: it is called at the
simulator's twin of that URL, with its real key when it has one, so tests can see
the key travel, else with a placeholder). Otherwise it gets no adapter, and
routing never sees it.

Adapter classes are named as ``module:Class`` and imported on first use, as
uvicorn picks its protocol implementations: the core names no implementation.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from pydantic import SecretStr

from proxy.adapters.base import Adapter
from symphony.catalog import Catalog, Provider, Wire
from symphony.settings import Settings

ADAPTERS: dict[Wire, str] = {
    "openai": "proxy.adapters.openai_compat:OpenAICompatAdapter",
    "anthropic": "proxy.adapters.anthropic:AnthropicAdapter",
    "gemini": "proxy.adapters.gemini:GeminiAdapter",
}
SIMULATOR_KEY = "sim-key"


def adapter_class(wire: Wire) -> type[Adapter]:
    module_name, _, class_name = ADAPTERS[wire].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"{ADAPTERS[wire]} is not an Adapter")
    return cls


def build_adapter(name: str, spec: Provider, base_url: str, api_key: str) -> Adapter:
    """``api_key`` "": the provider takes no key, and no auth header is sent."""
    capabilities = {model: price.capabilities for model, price in spec.models.items()}
    return adapter_class(spec.wire)(name, base_url, api_key, capabilities=capabilities, auth=spec.auth)


def build_adapters(catalog: Catalog, settings: Settings, keys: Mapping[str, SecretStr]) -> dict[str, Adapter]:
    """provider -> its adapter, for every candidate provider in ``catalog``."""
    adapters: dict[str, Adapter] = {}
    for name, spec in catalog.providers.items():
        key = keys.get(name)
        if settings.simulated(name):
            base_url = spec.simulated_base_url(settings.resolved_sim_url, name)
            api_key = key.get_secret_value() if key is not None else SIMULATOR_KEY
            adapters[name] = build_adapter(name, spec, base_url, api_key)
        elif key is not None:
            adapters[name] = build_adapter(name, spec, spec.base_url, key.get_secret_value())
        elif not spec.takes_key:
            adapters[name] = build_adapter(name, spec, spec.base_url, "")
    return adapters
