"""Provider and app quotas: the window rules, the atomic Redis store and its in-process twin,
ETAs to reset and to exhaustion, and the reconciler of observed limits.

The rest of the project imports these names from ``symphony.quotas``.
"""

from symphony.quotas.async_store import AsyncQuotaStore
from symphony.quotas.eta import Eta, NoEta, ProviderUsage, QuotaUpdate, exhaust_in_ms
from symphony.quotas.local import LocalQuotaStore
from symphony.quotas.reconciler import (
    OBSERVED_LIMIT_HEADERS,
    RUNTIME_CAP_TTL_MS,
    Adjustment,
    Reconciler,
    observed_limits,
)
from symphony.quotas.rules import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    MONTH,
    QUOTAS_FILE,
    ROLLING,
    Limit,
    QuotaPolicy,
    bucket_values,
    load_quota_policy,
    subscription_window,
)
from symphony.quotas.store import Amounts, QuotaStore, Refusal, Reservation, ReservationLost

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MINUTE_MS",
    "MONTH",
    "OBSERVED_LIMIT_HEADERS",
    "QUOTAS_FILE",
    "ROLLING",
    "RUNTIME_CAP_TTL_MS",
    "Adjustment",
    "Amounts",
    "AsyncQuotaStore",
    "Eta",
    "Limit",
    "LocalQuotaStore",
    "NoEta",
    "ProviderUsage",
    "QuotaPolicy",
    "QuotaStore",
    "QuotaUpdate",
    "Reconciler",
    "Refusal",
    "Reservation",
    "ReservationLost",
    "bucket_values",
    "exhaust_in_ms",
    "load_quota_policy",
    "observed_limits",
    "subscription_window",
]
