"""Model names as clients send them: ``auto``, a catalog model, or ``provider/model``."""

from __future__ import annotations

from collections.abc import Callable, Collection

import orjson

from proxy import errors
from proxy.routing.candidates import Pin
from symphony.catalog import Catalog

# Symphony picks the arm.
AUTO_MODELS = frozenset({"auto"})


def pin_for_model(catalog: Catalog, model: str) -> Pin | None:
    """``None`` for ``auto``, the arm a catalog model names, else ``ApiError`` 404."""
    if model in AUTO_MODELS:
        return None
    found = catalog.find_model(model)
    if found is None:
        raise errors.model_not_found(model)
    return Pin(*found)


def model_entry(
    catalog: Catalog,
    providers: Collection[str],
    name: str,
    *,
    allows: Callable[[str, str], bool] | None = None,
) -> dict[str, object] | None:
    """``GET /v1/models/{name}``: the model object as listed, if ``name`` is servable (and allowed)."""
    if name in AUTO_MODELS:
        return {"id": name, "object": "model", "created": 0, "owned_by": "symphony"}
    found = catalog.find_model(name)
    arms = [found] if found is not None else [(p, m) for p, m, _ in catalog.embedding_arms(name)]
    for provider, model in arms:
        if provider in providers and (allows is None or allows(provider, model)):
            return {"id": name, "object": "model", "created": 0, "owned_by": provider}
    return None


def models_body(
    catalog: Catalog, providers: Collection[str], *, allows: Callable[[str, str], bool] | None = None
) -> bytes:
    """``GET /v1/models``: ``auto``, then every servable arm as ``provider/model``, then plain model names.

    ``allows(provider, model)``: the caller's key's allow-list (every arm when None).
    """
    entries: dict[str, str] = {model: "symphony" for model in sorted(AUTO_MODELS)}
    servable = [
        (provider, model)
        for provider, spec in catalog.providers.items()
        if provider in providers
        for model in spec.models
        if allows is None or allows(provider, model)
    ]
    servable += [  # embedding models (POST /v1/embeddings)
        (provider, model)
        for provider, spec in catalog.providers.items()
        if provider in providers
        for model in spec.embeddings
        if allows is None or allows(provider, model)
    ]
    for provider, model in servable:
        entries[f"{provider}/{model}"] = provider
    for provider, model in servable:
        entries.setdefault(model, provider)
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": owner} for name, owner in entries.items()
    ]
    return orjson.dumps({"object": "list", "data": data})
