"""Every Redis key the project reads or writes, named in one place.

Keys that share a Redis Cluster slot carry the provider (or the reservation's scope) in
braces, ``{<provider>}``, the hash tag. Constants are whole keys or prefixes (ending in
``:``); functions build the keys that carry parts.
"""

from __future__ import annotations

# The shared clock (``symphony.clock``): a hash of ``start_ms``, ``anchor_ms``, ``speed``.
CLOCK_KEY = "symphony:clock"

# App keys (``symphony.app_keys``): the set of prefixes, and one hash per key.
APP_KEYS_INDEX = "symphony:appkeys"


def app_key_record(prefix: str) -> str:
    """``symphony:appkeys:<prefix>``: one app key's record."""
    return f"symphony:appkeys:{prefix}"


# The event stream (``symphony.stream``): shards ``symphony:events:<n>``.
STREAM_PREFIX = "symphony:events:"

# The challenger policy the learner publishes and the proxy serves (``symphony.serving``).
CHALLENGER_KEY = "symphony:policy:challenger"

# Live rollback flags (``symphony.flags``): a hash of flag -> value, over the settings' defaults.
FLAGS_KEY = "symphony:flags"
# The proxy's ring of recent failed or slow provider exchanges (a list; proxy.attempts.exchange_ring).
EXCHANGES_KEY = "symphony:exchanges"

# Each proxy process's circuit breakers (``proxy.breaker_states``, read by ``symphony.breakers``): a hash
# per replica, provider -> JSON state, with a TTL; and a sorted set of replica -> last publication (wall ms).
BREAKER_REPLICAS = "symphony:breakers"


def breakers_key(replica: str) -> str:
    """``symphony:breakers:<replica>``: one proxy process's breaker state per provider."""
    return f"symphony:breakers:{replica}"


# Failed authentications per address and minute (``proxy.edge.auth_failures``).
AUTH_FAILURE_PREFIX = "symphony:authfail:"

# Stream lag and trimming (``dataflows.lag``, ``dataflows.trimming``).
LAG_PREFIX = "symphony:metrics:lag:"
TRIMMED_KEY = "symphony:stream:trimmed"  # hash: shard -> entries removed by trimming so far
CONSUMERS_KEY = "symphony:consumers"
OFFSETS_PREFIX = "symphony:offsets:"


# What the quota gate writes to learn whether Redis takes writes again after an outage (a string, with a TTL).
QUOTA_PROBE_KEY = "symphony:quota:probe"


def quota_window_key(provider: str, metric: str, window: str) -> str:
    """``quota:{<provider>}:<metric>:<window>``: one quota window, a hash of its buckets."""
    return f"quota:{{{provider}}}:{metric}:{window}"


def runtime_cap_key(provider: str, metric: str, window: str) -> str:
    """``symphony:caps:{<provider>}:<metric>:<window>``: a runtime cap, with a TTL."""
    return f"symphony:caps:{{{provider}}}:{metric}:{window}"


def reservation_marker_key(tag: str, token: str) -> str:
    """``symphony:reservation:{<scope>}:<token>``: a reservation's marker, beside its buckets."""
    return f"symphony:reservation:{tag}:{token}"


def forecast_key(provider: str) -> str:
    """``symphony:forecast:{<provider>}``: interactive tokens forecast per UTC hour of day (a hash,
    ``"0"``..``"23"`` -> tokens, and ``note``), learned from ClickHouse by the engine for the scheduler."""
    return f"symphony:forecast:{{{provider}}}"


def eta_key(provider: str, metric: str, window: str) -> str:
    """``symphony:eta:{<provider>}:<metric>:<window>``: a window's published ETA (a hash)."""
    return f"symphony:eta:{{{provider}}}:{metric}:{window}"


def eta_keys_pattern(provider: str) -> str:
    """A SCAN pattern for every published ETA of ``provider`` (evidence bundles read them all)."""
    return f"symphony:eta:{{{provider}}}:*"


# Deferrable jobs (``symphony.jobs``). Every job key carries the hash tag ``{jobs}``, so the
# scripts that move a job between states (its record, the queue, the running set, a dispatcher's
# heartbeat) touch one Redis Cluster slot.
JOBS_QUEUE = "symphony:jobs:{jobs}:queue"  # sorted set: queued or planned job id -> deadline_ms
JOBS_RUNNING = "symphony:jobs:{jobs}:running"  # set: ids of jobs claimed by a dispatcher
JOBS_VERSION = "symphony:jobs:{jobs}:version"  # counter: bumped when the queue gains or loses a job


def job_key(job_id: str) -> str:
    """``symphony:jobs:{jobs}:job:<id>``: one job's record (a hash)."""
    return f"symphony:jobs:{{jobs}}:job:{job_id}"


def dispatcher_heartbeat_key(owner: str) -> str:
    """``symphony:jobs:{jobs}:dispatcher:<owner>``: a live dispatcher's heartbeat, with a short TTL."""
    return f"symphony:jobs:{{jobs}}:dispatcher:{owner}"


def incident_tickets_key(fingerprint: str) -> str:
    """``symphony:tickets:<fingerprint>``: an incident's tickets (hash: system -> ticket JSON)."""
    return f"symphony:tickets:{fingerprint}"
