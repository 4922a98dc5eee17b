"""Which arms may serve a request: the candidates, before the policy draws among them.

Start from every catalog arm whose provider has an adapter, then keep, in order:
the pinned provider and/or model (``Pin``), the models the caller's app key may use
(a 403 when none is left), the allowed providers, the arms whose
capabilities cover what the request needs, those whose estimated cost fits
``max_cost_usd``, those expected to answer within ``latency_budget_ms``, and those
that ``proxy.routing.health`` lets an attempt through (neither ejected nor cooled, unless the
pool is in panic). A step that leaves nothing is answered with an ``ApiError`` naming
why: a 4xx for what the request asked; when every remaining arm is out, a 429 (all
cooled by their providers' 429s) or 503 that says why each is out and a
``retry-after`` at which the first of them is back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy import errors
from proxy.adapters.features import FEATURES, required_capabilities, unsupported
from proxy.routing.health import Health, Rules
from proxy.routing.latency import LatencyEstimates
from symphony.app_keys import AppKey
from symphony.catalog import Catalog, ModelPrice

# Output tokens assumed for the cost estimate when the request sets no max_tokens.
ESTIMATED_OUTPUT_TOKENS = 512
# Characters per token for estimating a prompt's size without a tokenizer, and the
# tokens each message costs beyond its text (role, separators).
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True, slots=True)
class Arm:
    provider: str
    model: str
    name: str  # "provider/model"
    price: ModelPrice


@dataclass(frozen=True, slots=True)
class Pin:
    """An override: this provider and/or this model (``model`` is a catalog model of ``provider``)."""

    provider: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Constraints:
    max_cost_usd: float | None = None
    latency_budget_ms: float | None = None
    allowed_providers: frozenset[str] | None = None


NO_CONSTRAINTS = Constraints()


def prompt_tokens(body: Mapping[str, Any]) -> int:
    """A rough prompt size in tokens: text characters / 4, plus a few per message."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    chars = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(
                len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    return chars // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * len(messages)


def output_tokens(body: Mapping[str, Any]) -> int:
    """The answer's size bound: ``max_completion_tokens`` or ``max_tokens``, else an assumed size."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return ESTIMATED_OUTPUT_TOKENS


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    """A request's size before it is sent: read once from the body, priced per arm."""

    prompt_tokens: int
    output_tokens: int

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> TokenEstimate:
        return cls(prompt_tokens(body), output_tokens(body))

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def cost_usd(self, arm: Arm) -> float:
        return arm.price.cost_usd(self.prompt_tokens, self.output_tokens)


def estimated_cost_usd(arm: Arm, body: Mapping[str, Any]) -> float:
    return TokenEstimate.of(body).cost_usd(arm)


def _arms(catalog: Catalog, providers: Collection[str]) -> tuple[Arm, ...]:
    """Every arm of ``catalog`` whose provider is in ``providers`` (has an adapter), in catalog order."""
    return tuple(
        Arm(provider, model, f"{provider}/{model}", price)
        for provider, spec in catalog.providers.items()
        if provider in providers
        for model, price in spec.models.items()
    )


class Candidates:
    """The arms that can be called at all, and the per-request filter over them."""

    def __init__(
        self, catalog: Catalog, providers: Collection[str], rules: Rules, latency: LatencyEstimates
    ) -> None:
        """``rules``: how ``self.health``, made over these arms, judges them."""
        self.arms = _arms(catalog, providers)
        self._catalog = catalog
        self.health = Health(rules, [(arm.provider, arm.name) for arm in self.arms])
        self._latency = latency

    def serve(self, catalog: Catalog, providers: Collection[str]) -> None:
        """A new catalog (``CATALOG_FILE`` changed): its arms, once, for every request after."""
        arms = _arms(catalog, providers)
        self.health.reshape([(arm.provider, arm.name) for arm in arms])
        self._catalog, self.arms = catalog, arms

    def select(
        self,
        body: Mapping[str, Any],
        pin: Pin | None,
        constraints: Constraints,
        now: float,
        *,
        key: AppKey | None = None,
        estimate: TokenEstimate | None = None,
    ) -> tuple[Arm, ...]:
        """The candidates for ``body`` (catalog order); ``ApiError`` when none is left.

        ``key`` is the caller's app key: only the models it allows are candidates.
        ``estimate`` is ``body``'s, when the caller has it already.
        """
        arms = self._pinned(pin) if pin is not None else self.arms
        if key is not None and key.models:
            arms = self._permitted(arms, key, pin)
        if constraints.allowed_providers is not None:
            arms = self._allowed(arms, constraints.allowed_providers)
        arms = self._capable(arms, body, pinned=pin is not None and pin.model is not None)
        if constraints.max_cost_usd is not None:
            estimate = estimate if estimate is not None else TokenEstimate.of(body)
            arms = self._affordable(arms, estimate, constraints.max_cost_usd)
        if constraints.latency_budget_ms is not None:
            arms = self._fast_enough(arms, constraints.latency_budget_ms)
        return self._healthy(arms, now)

    def _pinned(self, pin: Pin) -> tuple[Arm, ...]:
        if pin.provider is not None and pin.provider not in self._catalog.providers:
            known = ", ".join(self._catalog.providers)
            raise errors.ApiError(
                400,
                f"Unknown provider `{pin.provider}` (known: {known}).",
                param="provider",
                code="unknown_provider",
            )
        arms = tuple(
            arm
            for arm in self.arms
            if (pin.provider is None or arm.provider == pin.provider)
            and (pin.model is None or arm.model == pin.model)
        )
        if not arms:
            what = "/".join(part for part in (pin.provider, pin.model) if part)
            raise errors.ApiError(
                404,
                f"The model `{what}` is not available: its provider has no key "
                "and the simulator does not serve it.",
                param="model",
                code="model_not_found",
            )
        return arms

    def _permitted(self, arms: Sequence[Arm], key: AppKey, pin: Pin | None) -> tuple[Arm, ...]:
        kept = tuple(arm for arm in arms if key.allows(arm.provider, arm.model))
        if kept:
            return kept
        if pin is not None and pin.model is not None:
            what = f"the model `{pin.provider}/{pin.model}`"
        elif pin is not None:
            what = f"any model of `{pin.provider}`"
        else:
            what = "any available model"
        raise errors.ApiError(
            403,
            f"The key of app `{key.app}` may not use {what}; it may use: {', '.join(key.models)}.",
            type_="permission_error",
            param="model",
            code="model_not_allowed",
        )

    def _allowed(self, arms: Sequence[Arm], allowed: frozenset[str]) -> tuple[Arm, ...]:
        kept = tuple(arm for arm in arms if arm.provider in allowed)
        if not kept:
            raise errors.ApiError(
                400,
                f"No candidate arm is left within constraints.allowed_providers {sorted(allowed)}.",
                param="constraints.allowed_providers",
                code="no_candidate",
            )
        return kept

    def _capable(self, arms: Sequence[Arm], body: Mapping[str, Any], *, pinned: bool) -> tuple[Arm, ...]:
        needed = required_capabilities(body)
        if not needed:
            return tuple(arms)
        kept = tuple(arm for arm in arms if needed <= arm.price.capabilities)
        if kept:
            return kept
        arm = arms[0]
        missing = min(needed - arm.price.capabilities, key=list(FEATURES).index)
        refusal = unsupported(arm.provider, missing)
        if pinned:
            raise errors.ApiError(400, str(refusal), param=refusal.param, code="unsupported_feature")
        words = FEATURES.get(missing, (missing, missing))[0]
        raise errors.ApiError(
            400,
            f"No candidate arm can serve this request: none supports {words}.",
            param=refusal.param,
            code="unsupported_feature",
        )

    def _affordable(self, arms: Sequence[Arm], estimate: TokenEstimate, limit: float) -> tuple[Arm, ...]:
        costs = [estimate.cost_usd(arm) for arm in arms]
        kept = tuple(arm for arm, cost in zip(arms, costs, strict=True) if cost <= limit)
        if not kept:
            raise errors.ApiError(
                400,
                f"No candidate arm fits constraints.max_cost_usd={limit:g}: the cheapest is estimated at "
                f"${min(costs):.6f} for this prompt and {estimate.output_tokens} output tokens.",
                param="constraints.max_cost_usd",
                code="no_candidate",
            )
        return kept

    def _fast_enough(self, arms: Sequence[Arm], budget_ms: float) -> tuple[Arm, ...]:
        estimates = [self._latency.latency_ms(arm.name) for arm in arms]
        kept = tuple(arm for arm, ms in zip(arms, estimates, strict=True) if ms is None or ms <= budget_ms)
        if not kept:
            fastest = min(ms for ms in estimates if ms is not None)
            raise errors.ApiError(
                400,
                f"No candidate arm is expected to answer within constraints.latency_budget_ms={budget_ms:g} "
                f"(the fastest takes about {fastest:.0f} ms).",
                param="constraints.latency_budget_ms",
                code="no_candidate",
            )
        return kept

    def _healthy(self, arms: Sequence[Arm], now: float) -> tuple[Arm, ...]:
        health = self.health
        if health.quiet(now):
            return tuple(arms)
        kept = tuple(arm for arm in arms if health.available(arm.provider, arm.name, now))
        if kept:
            return kept
        wait = min(health.retry_in(arm.provider, arm.name, now) for arm in arms)
        headers = errors.retry_after_header(wait)
        reasons = "; ".join(dict.fromkeys(health.why(arm.provider, arm.name, now) for arm in arms))
        if all(health.cooled_only(arm.provider, arm.name, now) for arm in arms):
            raise errors.ApiError(
                429,
                f"Every candidate is rate-limited by its provider ({reasons}); retry in {wait:.1f} s.",
                type_="rate_limit_error",
                code="rate_limit_exceeded",
                headers=headers,
            )
        raise errors.ApiError(
            503,
            f"Every candidate is out of rotation ({reasons}); retry in {wait:.1f} s.",
            type_="api_error",
            code="providers_unavailable",
            headers=headers,
        )
