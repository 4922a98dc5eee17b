"""What environment each process ``symphony up`` starts may receive: least privilege, in one table.

Every part reads its configuration through ``Settings`` (``symphony.settings``), so
each gets the process basics (``SYSTEM``) and Symphony's settings that are no
secret (``SETTINGS``). Secrets go only where they are used:

- provider keys (each catalog provider's ``key_env`` and ``<key_env>_FILE``): the
  proxy, which calls the providers (``proxy.app`` reads them);
- ``DECISION_KEY``, which signs decision ids: the proxy, which issues them and
  verifies them on feedback;
- ``DISPATCHER_TOKEN``, with which the scheduler sends jobs through the proxy as their apps:
  the scheduler, which sends them, and the proxy, which checks it;
- the control-plane tokens (``ADMIN_TOKEN``, ``ANALYST_TOKEN``) and the alert
  destinations: the engine, which serves the control-plane API and sends alerts;
- ``SPANS_TOKEN``, which may only post spans to the control plane: the proxy, which
  sends them, and the engine, which checks it.

The simulator gets no secret: it takes whatever key a request carries. Anything
else in the parent's environment (another tool's token, say) reaches no part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import get_args

from pydantic import SecretStr

from symphony.catalog import Catalog, load_catalog
from symphony.settings import Settings


@dataclass(frozen=True)
class Variables:
    """A set of environment variables, by exact name (any case) or by prefix."""

    names: frozenset[str]
    prefixes: tuple[str, ...] = ()

    def __contains__(self, name: object) -> bool:
        upper = str(name).upper()
        return upper in self.names or upper.startswith(self.prefixes)


def _secret_settings() -> frozenset[str]:
    return frozenset(
        name.upper() for name, f in Settings.model_fields.items() if SecretStr in get_args(f.annotation)
    )


PROXY_SECRETS = Variables(frozenset({"DECISION_KEY"}))
DISPATCH_SECRETS = Variables(frozenset({"DISPATCHER_TOKEN"}))
# Shared by the two ends of one channel: the proxy posts spans with it, the engine checks it.
SPAN_WRITER = Variables(frozenset({"SPANS_TOKEN"}))


def provider_keys(catalog: Catalog) -> Variables:
    """Every provider key ``catalog`` names, as ``<key_env>`` and ``<key_env>_FILE``."""
    envs = [spec.key_env.upper() for spec in catalog.providers.values() if spec.takes_key]
    return Variables(frozenset(envs + [f"{env}_FILE" for env in envs]))


SYSTEM = Variables(
    frozenset(
        {"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV", "LD_LIBRARY_PATH"}
        | {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}
    ),
    prefixes=("LC_", "PYTHON"),
)
CONTROL_PLANE_TOKENS = Variables(
    _secret_settings() - PROXY_SECRETS.names - DISPATCH_SECRETS.names - SPAN_WRITER.names
)
ALERT_DESTINATIONS = Variables(frozenset({"SLACK_WEBHOOK_URL", "PAGERDUTY_ROUTING_KEY"}))
PROVIDER_KEYS = provider_keys(load_catalog())  # the bundled catalog's
SETTINGS = Variables(
    frozenset(name.upper() for name in Settings.model_fields)
    - CONTROL_PLANE_TOKENS.names
    - PROXY_SECRETS.names
    - DISPATCH_SECRETS.names
    - SPAN_WRITER.names
    - ALERT_DESTINATIONS.names
)

# The table: part -> what it may receive.
MAY_RECEIVE: dict[str, tuple[Variables, ...]] = {
    "sim": (SYSTEM, SETTINGS),
    "engine": (SYSTEM, SETTINGS, CONTROL_PLANE_TOKENS, SPAN_WRITER, ALERT_DESTINATIONS),
    "proxy": (SYSTEM, SETTINGS, PROVIDER_KEYS, PROXY_SECRETS, DISPATCH_SECRETS, SPAN_WRITER),
    "scheduler": (SYSTEM, SETTINGS, DISPATCH_SECRETS),
}


def may_receive(part: str, name: str, catalog: Catalog | None = None) -> bool:
    """Whether ``part`` may receive ``name``; the proxy also the keys ``catalog`` (CATALOG_FILE) names."""
    if part == "proxy" and catalog is not None and name in provider_keys(catalog):
        return True
    return any(name in variables for variables in MAY_RECEIVE[part])


def child_env(part: str, environ: Mapping[str, str], catalog: Catalog | None = None) -> dict[str, str]:
    """The part's environment: only the variables of ``environ`` its row of the table allows
    (the proxy's row with the provider keys of ``catalog``, the user's, too)."""
    return {name: value for name, value in environ.items() if may_receive(part, name, catalog)}
