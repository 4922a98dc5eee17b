"""Live rollback flags: set at start by the environment, changed at run time in Redis.

``LEARNER_ENABLED``, ``TRAFFIC_SPLIT``, ``SCHEDULER_ENABLED`` and ``EVIDENCE_BUNDLES`` are read once from the
environment, as defaults. An operator overrides them at run time (``symphony flags``) in the
hash ``FLAGS_KEY``, which every proxy replica, the engine and the scheduler read every second
or so, so a rollback takes effect everywhere within seconds, without a restart and without
losing an event:

- ``learner_enabled=false``: the engine's learner publishes no challenger, and the proxy
  serves the champion alone (the challenger's share is 0 whatever ``traffic_split`` says);
- ``traffic_split=0``: the proxy serves the champion alone; the learner keeps learning;
- ``challenger_frozen=true``: the learner keeps learning but publishes nothing, so every
  replica keeps serving the challenger published last (to evaluate a fixed policy, or
  to hold one while investigating). Not set by the environment: it starts false;
- ``scheduler_enabled=false``: the scheduler's dispatcher sends every queued job at once
  instead of at its planned slot (the baseline); queued jobs are kept;
- ``evidence_bundles=false``: the engine makes no evidence bundle and opens no ticket for the
  alerts that fire from then on (bundles and tickets made stay).

A value in Redis that is not valid is ignored (the default holds) and said once.

>>> defaults = Flags(learner_enabled=True, traffic_split=0.05)
>>> defaults.merged({b"traffic_split": b"0"}).challenger_share
0.0
>>> defaults.merged({b"learner_enabled": b"false"}).challenger_share
0.0
>>> defaults.merged({b"traffic_split": b"lots"}).challenger_share
0.05
>>> defaults.merged({b"scheduler_enabled": b"off"}).scheduler_enabled
False
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger(__name__)

TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
FLAG_NAMES = (
    "learner_enabled",
    "traffic_split",
    "scheduler_enabled",
    "challenger_frozen",
    "evidence_bundles",
)
_warned: set[tuple[str, str]] = set()


class FlagError(ValueError):
    """A flag value that cannot be used; the message says what the flag accepts."""


@dataclass(frozen=True)
class Flags:
    learner_enabled: bool
    traffic_split: float
    scheduler_enabled: bool = True
    challenger_frozen: bool = False
    evidence_bundles: bool = False

    @property
    def publishes(self) -> bool:
        """Whether the learner may publish a new challenger."""
        return self.learner_enabled and not self.challenger_frozen

    @property
    def challenger_share(self) -> float:
        """The share of requests the challenger draws: none while the learner is off."""
        return self.traffic_split if self.learner_enabled else 0.0

    def merged(self, stored: Mapping[Any, Any]) -> Flags:
        """These defaults with the valid values of ``stored`` (the ``FLAGS_KEY`` hash) over them."""
        flags = self
        for raw_name, raw_value in stored.items():
            name, value = _text(raw_name), _text(raw_value)
            try:
                flags = flags.with_value(name, value)
            except FlagError as exc:
                _warn_once(name, value, str(exc))
        return flags

    def with_value(self, name: str, value: str) -> Flags:
        """These flags with ``name`` set from its text; ``FlagError`` if either is not valid."""
        if name == "learner_enabled":
            return replace(self, learner_enabled=parse_bool(value, name))
        if name == "scheduler_enabled":
            return replace(self, scheduler_enabled=parse_bool(value, name))
        if name == "challenger_frozen":
            return replace(self, challenger_frozen=parse_bool(value, name))
        if name == "evidence_bundles":
            return replace(self, evidence_bundles=parse_bool(value, name))
        if name == "traffic_split":
            return replace(self, traffic_split=parse_share(value))
        raise FlagError(f"unknown flag {name!r}: the flags are {', '.join(FLAG_NAMES)}")


def parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE or lowered in FALSE:
        return lowered in TRUE
    raise FlagError(f"{name}={value!r}: expected true or false")


def parse_share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = math.nan
    if not 0.0 <= share <= 1.0:
        raise FlagError(f"traffic_split={value!r}: expected a number from 0 to 1")
    return share


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _warn_once(name: str, value: str, why: str) -> None:
    if (name, value) not in _warned:
        _warned.add((name, value))
        log.warning("ignoring the live flag %s=%r (%s); the default holds", name, value, why)
