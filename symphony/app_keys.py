"""App keys: who may spend through Symphony, on which models, within which budgets and limits.

A key looks like ``sk-sym-<prefix>-<secret>``: the 8-character prefix is public
(it names the key in lists and logs), the secret is 32 random url-safe bytes.
Redis holds only the key's SHA-256 (a key is random, so a fast hash cannot be
brute-forced) under ``symphony:appkeys:<prefix>``, with the app it belongs to,
its budgets and limits, and ``revoked_ms`` once revoked. The key itself is shown
once, at creation.

An app's budgets (USD per UTC day and per calendar month) and rate limits
(requests and tokens per rolling minute) are quota ``Limit``s under the scope
``app:<name>``, so they are reserved and settled by the same script as the
provider quotas (``symphony.quotas.store``) and hold across every proxy replica.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import redis

from symphony.catalog import Catalog
from symphony.keys import APP_KEYS_INDEX, app_key_record
from symphony.quotas import DAY_MS, MONTH, ROLLING, Limit, subscription_window

T = TypeVar("T")

KEY_PATTERN = re.compile(r"sk-sym-([A-Za-z0-9]{8})-([A-Za-z0-9_-]{43})")
INDEX_KEY = APP_KEYS_INDEX
PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
USD_MICROS = 1_000_000
DAY = subscription_window("1d", "fixed")
assert DAY.length_ms == DAY_MS


def record_key(prefix: str) -> str:
    return app_key_record(prefix)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class AppKey:
    """A key's record, never its secret."""

    prefix: str
    app: str
    created_ms: int
    budget_usd_day: float | None = None
    budget_usd_month: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] = ()  # allowed models (provider/model or model); empty: any
    revoked_ms: int | None = None
    sha256: str = field(default="", repr=False)

    @property
    def scope(self) -> str:
        return f"app:{self.app}"

    def allows(self, provider: str, model: str) -> bool:
        return not self.models or model in self.models or f"{provider}/{model}" in self.models

    def limits(self) -> tuple[Limit, ...]:
        """The app's budgets and rate limits as quota limits (scope ``app:<name>``)."""
        return self._limits

    @functools.cached_property
    def _limits(self) -> tuple[Limit, ...]:  # the record is frozen: built once per key
        limits = []
        if self.rpm is not None:
            limits.append(Limit(self.scope, "requests", ROLLING["minute"], self.rpm))
        if self.tpm is not None:
            limits.append(Limit(self.scope, "tokens", ROLLING["minute"], self.tpm))
        if self.budget_usd_day is not None:
            limits.append(Limit(self.scope, "usd_micros", DAY, int(self.budget_usd_day * USD_MICROS)))
        if self.budget_usd_month is not None:
            limits.append(Limit(self.scope, "usd_micros", MONTH, int(self.budget_usd_month * USD_MICROS)))
        return tuple(limits)

    def to_fields(self) -> dict[str, str]:
        values = asdict(self)
        values["models"] = ",".join(self.models)
        return {name: "" if value is None else str(value) for name, value in values.items()}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> AppKey:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(
            prefix=text["prefix"],
            app=text["app"],
            created_ms=int(text["created_ms"]),
            budget_usd_day=_optional(text, "budget_usd_day", float),
            budget_usd_month=_optional(text, "budget_usd_month", float),
            rpm=_optional(text, "rpm", int),
            tpm=_optional(text, "tpm", int),
            models=tuple(m for m in text.get("models", "").split(",") if m),
            revoked_ms=_optional(text, "revoked_ms", int),
            sha256=text.get("sha256", ""),
        )


def _optional(text: dict[str, str], name: str, kind: Callable[[str], T]) -> T | None:
    return kind(text[name]) if text.get(name) else None


def split_key(presented: str) -> tuple[str, str] | None:
    """(prefix, whole key) of a well-formed key, else None."""
    match = KEY_PATTERN.fullmatch(presented)
    return (match[1], presented) if match else None


def matches(record: AppKey, presented: str) -> bool:
    return hmac.compare_digest(record.sha256, digest(presented))


def check_models(models: Sequence[str], catalog: Catalog) -> None:
    """``ValueError`` naming the catalog's models when one of ``models`` is not in it.

    A key's models match as the proxy matches them (``AppKey.allows``): a model's name alone
    (on any provider serving it) or ``provider/model``, as ``Catalog.find_model`` reads both.
    """
    unknown = [
        model for model in models if catalog.find_model(model) is None and not catalog.embedding_arms(model)
    ]
    if not unknown:
        return
    known = sorted({model for arm in catalog.arms for model in (arm, arm.partition("/")[2])})
    hints = [
        f"{model!r} (did you mean {', '.join(close)}?)"
        if (close := difflib.get_close_matches(model, known, 2))
        else repr(model)
        for model in unknown
    ]
    raise ValueError(
        f"unknown model{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; the catalog's models "
        f"(a name alone, or as provider/model): {', '.join(catalog.arms)}"
    )


def create_key(client: redis.Redis, record: AppKey, *, catalog: Catalog | None = None) -> tuple[str, AppKey]:
    """Store a new key for ``record.app``; returns the key (shown once) and its record.

    With ``catalog``, a model in ``record.models`` that it does not hold is refused (``check_models``).
    """
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", record.app):
        raise ValueError(f"app name {record.app!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if catalog is not None:
        check_models(record.models, catalog)
    while True:
        prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(8))
        key = f"sk-sym-{prefix}-{secrets.token_urlsafe(32)}"
        stored = AppKey(
            **{**asdict(record), "prefix": prefix, "sha256": digest(key), "models": record.models}
        )
        if client.hsetnx(record_key(prefix), "prefix", prefix):
            client.hset(record_key(prefix), mapping=stored.to_fields())  # type: ignore[arg-type]
            client.sadd(INDEX_KEY, prefix)
            return key, stored


def load_key(client: redis.Redis, prefix: str) -> AppKey | None:
    fields: dict[bytes, bytes] = client.hgetall(record_key(prefix))  # type: ignore[assignment]
    return AppKey.from_fields(fields) if fields else None


def list_keys(client: redis.Redis) -> list[AppKey]:
    prefixes = sorted(p.decode() for p in client.smembers(INDEX_KEY))  # type: ignore[union-attr]
    records = [load_key(client, prefix) for prefix in prefixes]
    return sorted((r for r in records if r is not None), key=lambda r: (r.app, r.created_ms))


def revoke_key(client: redis.Redis, prefix: str, now_ms: int) -> AppKey:
    record = load_key(client, prefix)
    if record is None:
        raise KeyError(f"no app key with prefix {prefix!r} (see `symphony keys list`)")
    client.hset(record_key(prefix), "revoked_ms", str(now_ms))
    return AppKey(**{**asdict(record), "revoked_ms": now_ms, "models": record.models})
