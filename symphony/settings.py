"""Settings and feature flags, read once from the environment into one object.

Nothing else in Symphony reads the environment for configuration: every process
calls ``load_settings()`` at start and passes the result down. A bad value stops
start-up with a ``SettingsError`` that names the variable and what it accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from symphony.catalog import Catalog, CatalogError, load_catalog, read_catalog, resolve_policy_path
from symphony.redaction import compile_operator_patterns
from symphony.redis_client import URL_SCHEMES, cluster_seeds, is_cluster_url
from symphony.secret_files import read_secret

Port = Annotated[int, Field(ge=1, le=65535)]

# What each variable accepts, in words, for the start-up error.
ACCEPTS: dict[str, str] = {
    "REDIS_URL": "a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379/0",
    "CLICKHOUSE_URL": "chdb:///absolute/dir for embedded chDB, or an http(s):// ClickHouse URL",
    "TRAFFIC_SPLIT": "a number from 0 to 1 (the share of requests served by the challenger)",
    "EVENT_SHARDS": "a whole number from 1 to 64",
    "QUOTA_FAIL_MODE": "open or closed",
    "LOG_FORMAT": "text or json",
    "QUOTA_LEASE_REQUESTS": "a whole number from 0 (no leases) to 1000",
    "QUOTA_LOCAL_SHARE": "a number above 0 and at most 1 (the share of each cap one replica may use alone)",
    "SIMULATED_PROVIDERS": "all, none, or a comma list of catalog providers (openai,anthropic,...)",
    "AUTH_FAILURES_PER_MINUTE": "a whole number of at least 1 (failed authentications per client address)",
    "MAX_HEADER_BYTES": "a whole number of bytes from 1024 to 1048576",
    "DECISION_KEY": "a secret of at least 16 characters, the same on every proxy replica",
    "TEMPO_ENDPOINT": "empty (no Tempo) or an http(s):// OTLP/HTTP URL, e.g. http://tempo:4318",
    "TEMPO_QUERY_URL": "empty (TEMPO_ENDPOINT's host, port 3200) or Tempo's http(s):// API URL",
    "ALERTMANAGER_URL": "empty (no Alertmanager) or an http(s):// URL, e.g. http://alertmanager:9093",
    "TRACE_URL_TEMPLATE": "empty, or an http(s):// URL holding {trace_id}, e.g. https://grafana/trace/{trace_id}",
    "SLO_ERROR_RATE": "a number above 0 and at most 1",
    "DISPATCHER_TOKEN": "a secret of at least 16 characters, the same for the proxy and the scheduler",
}
BOOLEAN_ACCEPTS = "true or false (also 1/0, yes/no, on/off)"
PORT_ACCEPTS = "a port number from 1 to 65535"
# Under VAR_DIR: the port an engine started with ``--any-port`` (tests) listens on, once it does.
ENGINE_PORT_FILE = "engine-port"
# OTEL_BSP_SCHEDULE_DELAY's default, the OpenTelemetry SDK's: ms a finished span may wait for its export.
SPAN_EXPORT_DELAY_MS = 5000
CLICKHOUSE_CLUSTER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


class SettingsError(Exception):
    """A setting has a value Symphony cannot use; the message says which and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    clickhouse_url: str = ""
    clickhouse_cluster: str = ""  # a ClickHouse cluster's name (remote_servers): migrations run ON CLUSTER
    var_dir: Path = Path("var")
    # How every process writes its log lines to stderr: "text" (time, logger, level, message and
    # key=value fields) or "json" (one JSON object a line); symphony.process_logging.
    log_format: Literal["text", "json"] = "text"
    # Alert destinations and the scheduler, chaos and evidence flags arrive with their
    # features: a setting that nothing reads would be a switch that does nothing.
    # The proxy's spans also go over OTLP/HTTP to this endpoint (`/v1/traces` is added unless
    # given), beside the control plane (spans_token below); proxy.tracing.
    tempo_endpoint: str = ""
    # Milliseconds a finished span may wait for its export (sooner when 2,048 are queued): the
    # OpenTelemetry SDK's variable and default. Each export costs the proxy per round, not per
    # span, so a short delay costs a quiet proxy the most.
    otel_bsp_schedule_delay: int = Field(default=SPAN_EXPORT_DELAY_MS, gt=0, le=60_000)
    # Tempo's HTTP API (search), for `symphony trace-coverage`; default: TEMPO_ENDPOINT's host on
    # Tempo's HTTP port, 3200.
    tempo_query_url: str = ""

    # SLOs per arm (dataflows.slo), judged in event time over a sliding window every step.
    slo_p95_ms: float = Field(default=5000.0, gt=0.0)
    slo_error_rate: float = Field(default=0.02, gt=0.0, le=1.0)
    slo_window_s: float = Field(default=300.0, gt=0.0)
    slo_step_s: float = Field(default=60.0, gt=0.0)
    slo_min_attempts: int = Field(default=20, ge=1)
    # Where alerts go (sinks.alerts); with none set they land in ClickHouse `alerts` only.
    alertmanager_url: str = ""
    slack_webhook_url: SecretStr | None = None
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    # The trace link an alert carries, `{trace_id}` filled in (a Grafana or Tempo URL); empty: the
    # control plane's own `/traces/{trace_id}`.
    trace_url_template: str = ""

    # Evidence bundles (sinks.evidence): one per SLO alert, failed chaos scenario or
    # `symphony evidence capture`, written under VAR_DIR/evidence and recorded in ClickHouse.
    evidence_bundles: bool = False
    # Regular expressions (a JSON list) masked in every bundle beside the built-in rules.
    evidence_redact_patterns: list[str] = []
    # Tickets for incidents: a GitHub issue (the bundle a release asset) and a Jira Cloud issue
    # (the bundle attached). Each is off until its repository / project is set.
    evidence_github_repository: str = ""
    evidence_github_token: SecretStr | None = None
    evidence_github_token_file: str = ""
    evidence_github_api_url: str = "https://api.github.com"
    jira_url: str = ""
    jira_email: str = ""
    jira_api_token: SecretStr | None = None
    jira_api_token_file: str = ""
    jira_project: str = ""

    learner_enabled: bool = True
    traffic_split: float = Field(default=0.05, ge=0.0, le=1.0)
    # The scheduler plans deferrable jobs into usage windows; false sends each job at once (the
    # baseline). Live: `symphony flags --scheduler off` (symphony.flags).
    scheduler_enabled: bool = True

    proxy_host: str = "127.0.0.1"
    proxy_port: Port = 8700
    sim_port: Port = 8701
    engine_port: Port = 8702
    scheduler_port: Port = 8703
    sim_url: str = ""
    event_shards: int = Field(default=4, ge=1, le=64)
    policy_file: Path = Path("policies/champion.json")
    # The providers and models Symphony may serve, with prices and capabilities: the user's own file
    # (docs/catalog.md). The proxy checks it at start and serves a changed one within a second.
    catalog_file: Path = Path("policies/catalog.v1.json")

    # Which providers the simulator stands in for: "all", "none", or a comma list of the bundled
    # catalog's providers (the simulator is their twin; a provider of one's own is always called at
    # its base_url). A provider with neither a key nor the simulator is no candidate.
    simulated_providers: str = "none"
    ttft_limit_ms: int = Field(default=2500, ge=1)
    # How long a non-streamed attempt may take before the proxy falls back (its first byte is the whole
    # answer): 0 derives it per arm, TTFT_LIMIT_MS plus the arm's measured time per token for the
    # answer's size bound; N caps that at N ms.
    answer_limit_ms: int = Field(default=0, ge=0)
    request_deadline_ms: int = Field(default=60_000, ge=1)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_ms: int = Field(default=10_000, ge=1)
    # Provider health (proxy.routing.health): failure rates over a sliding window, at least breaker_failures
    # failures before the rate counts, breaker_timeouts timeouts for slowness; no more than
    # breaker_max_ejected_share of the arms ejected at once; below breaker_panic_share of the arms
    # available, 429 cooling is ignored.
    breaker_window_ms: int = Field(default=10_000, ge=100)
    breaker_failure_rate: float = Field(default=0.5, gt=0.0, le=1.0)
    breaker_timeouts: int = Field(default=2, ge=1)
    breaker_max_ejected_share: float = Field(default=0.5, ge=0.0, le=1.0)
    breaker_panic_share: float = Field(default=0.5, ge=0.0, le=1.0)

    # When Redis is unreachable: "open" serves on a local limiter holding quota_local_share of
    # every cap (1/replicas keeps caps across replicas); "closed" refuses until Redis is back.
    quota_policy_file: Path = Path("policies/quotas.v1.json")
    quota_fail_mode: Literal["open", "closed"] = "open"
    quota_local_share: float = Field(default=1.0, gt=0.0, le=1.0)
    # The most requests one quota lease holds (proxy.attempts.quota_lease): an arm whose windows have
    # room reserves that many at once in Redis and grants them in process; 0 reserves every request.
    quota_lease_requests: int = Field(default=32, ge=0, le=1000)
    # Proxy processes sharing PROXY_PORT (uvicorn's workers: the port is bound once and every
    # process accepts on it). Each holds quota_local_share / proxy_workers of every cap when it
    # serves on its local limiter.
    proxy_workers: int = Field(default=1, ge=1, le=64)

    # Every inbound API but /health and /metrics needs a Symphony app key. AUTH_DISABLED=true
    # turns that off (local development only); the proxy and `symphony up` warn at every start.
    auth_disabled: bool = False
    # Failed authentications one client address may make per minute (across replicas) before 429.
    auth_failures_per_minute: int = Field(default=30, ge=1)
    # The control plane's HTTP API: the admin token may do anything, the analyst token may only
    # read (query, metrics). `symphony up` makes both (var/admin-token, var/analyst-token) unless set.
    admin_token: SecretStr | None = None
    analyst_token: SecretStr | None = None
    # The proxy's token for posting spans to the control plane's POST /v1/traces, and nothing else
    # (dataflows.api_auth); the proxy exports spans to the control plane when it holds one.
    # `symphony up` makes one (var/spans-token) unless set.
    spans_token: SecretStr | None = None
    # The proxy's key for decision ids (proxy.decision_ids): the same on every replica, so feedback
    # on a decision is verified wherever it lands. `symphony up` makes one (var/decision-key) unless set.
    decision_key: SecretStr | None = None
    # The scheduler's dispatcher sends jobs through the proxy with this token and the job's id; the
    # proxy admits each claimed job once (symphony.jobs). `symphony up` makes one (var/dispatcher-token).
    dispatcher_token: SecretStr | None = None
    # Limits on every analyst query (`symphony sql`, the engine's /query), enforced by ClickHouse;
    # the error of a query that passes one names its setting.
    analyst_max_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    analyst_max_memory_mb: int = Field(default=1024, ge=16)
    analyst_max_rows_read: int = Field(default=2_000_000_000, ge=1)
    analyst_max_result_rows: int = Field(default=100_000, ge=1)
    analyst_max_result_mb: int = Field(default=64, ge=1)
    analyst_concurrency: int = Field(default=4, ge=1, le=64)
    # Request headers larger than this in all are answered 431.
    max_header_bytes: int = Field(default=16 << 10, ge=1024, le=1 << 20)

    @field_validator("simulated_providers")
    @classmethod
    def _provider_list(cls, value: str) -> str:
        names = {name.strip() for name in value.split(",") if name.strip()}
        unknown = names - {"all", "none"} - set(load_catalog().providers)
        if unknown:
            raise ValueError(f"unknown providers {sorted(unknown)}")
        return value

    def simulated(self, provider: str) -> bool:
        """Whether the simulator stands in for ``provider`` (only ever a bundled catalog's provider)."""
        if provider not in load_catalog().providers:
            return False
        names = {name.strip() for name in self.simulated_providers.split(",")}
        return "all" in names or provider in names

    @property
    def resolved_catalog_file(self) -> Path:
        """``catalog_file`` as found (as given, or under the repository); ``CatalogError`` if nowhere."""
        try:
            return resolve_policy_path(self.catalog_file).resolve()
        except FileNotFoundError as exc:
            raise CatalogError(f"CATALOG_FILE: {exc}") from None

    def read_catalog(self) -> Catalog:
        """The catalog ``CATALOG_FILE`` holds now, checked; ``CatalogError`` names each bad entry."""
        return read_catalog(self.resolved_catalog_file)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(URL_SCHEMES):
            raise ValueError(
                "must start with redis://, rediss://, unix:// or redis+cluster:// (rediss+cluster://)"
            )
        if is_cluster_url(value):
            cluster_seeds(value)  # raises ValueError naming what is wrong
        return value

    @field_validator("clickhouse_cluster")
    @classmethod
    def _clickhouse_cluster_name(cls, value: str) -> str:
        if value and not CLICKHOUSE_CLUSTER_NAME.fullmatch(value):
            raise ValueError(
                "use the cluster's name in remote_servers: letters, digits, '_', '.', '-'; at most 64"
            )
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _clickhouse_scheme(cls, value: str) -> str:
        if value and not value.startswith(("chdb:///", "http://", "https://")):
            raise ValueError("must start with chdb:///, http:// or https://")
        return value

    @field_validator(
        "tempo_endpoint",
        "tempo_query_url",
        "alertmanager_url",
        "pagerduty_events_url",
        "evidence_github_api_url",
        "jira_url",
    )
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be empty or an http:// or https:// URL with a host")
        return value

    @field_validator("trace_url_template")
    @classmethod
    def _trace_template(cls, value: str) -> str:
        if value and (not value.startswith(("http://", "https://")) or "{trace_id}" not in value):
            raise ValueError("must be empty or an http(s):// URL holding {trace_id}")
        return value

    @field_validator("evidence_redact_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        compile_operator_patterns(value)  # a ValueError names the pattern
        return value

    @field_validator("evidence_github_repository")
    @classmethod
    def _owner_name(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", value):
            raise ValueError("must be owner/name, e.g. acme/symphony")
        return value

    @field_validator("decision_key", "dispatcher_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("too short")
        return value

    @field_validator(
        "decision_key",
        "dispatcher_token",
        "admin_token",
        "analyst_token",
        "slack_webhook_url",
        "pagerduty_routing_key",
        "spans_token",
        "evidence_github_token",
        "jira_api_token",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _a_port_per_part(self) -> Settings:
        """Two parts on one port: the second cannot bind it, and while it tries the first answers for it."""
        ports = {"PROXY_PORT": self.proxy_port, "ENGINE_PORT": self.engine_port}
        ports["SCHEDULER_PORT"] = self.scheduler_port
        if not self.sim_url:  # else the simulator is elsewhere and SIM_PORT unused
            ports["SIM_PORT"] = self.sim_port
        holders: dict[int, str] = {}
        for name, port in ports.items():
            if port in holders:
                raise ValueError(
                    f"{holders[port]} and {name} are both {port}: the proxy, the simulator, the engine "
                    "and the scheduler each need a port of their own"
                )
            holders[port] = name
        return self

    @property
    def resolved_clickhouse_url(self) -> str:
        """The ClickHouse target: the setting, or chDB in ``var/chdb`` by default."""
        return self.clickhouse_url or f"chdb://{(self.var_dir / 'chdb').resolve()}"

    @property
    def resolved_sim_url(self) -> str:
        """The simulator's base URL: the setting, or the local one on ``sim_port``."""
        return self.sim_url or f"http://127.0.0.1:{self.sim_port}"

    @property
    def dev_key_file(self) -> Path:
        """Where `symphony up` keeps the development key (mode 0600) for the demo and the load tool."""
        return self.var_dir / "dev-key"

    @property
    def engine_url(self) -> str:
        return f"http://127.0.0.1:{self.engine_port}"

    @property
    def resolved_trace_url_template(self) -> str:
        return self.trace_url_template or f"{self.engine_url}/traces/{{trace_id}}"

    def engine_url_as(self, role: Literal["admin", "analyst"]) -> str:
        """The engine's URL carrying a role's token (``http://analyst:<token>@…``), if one is known.

        The token comes from the setting, else from the file `symphony up` wrote under var/.
        ``symphony.engine_client`` sends it as a bearer token and never prints it.
        """
        setting = self.admin_token if role == "admin" else self.analyst_token
        token = setting.get_secret_value() if setting is not None else read_secret(self.token_file(role))
        return f"http://{role}:{token}@127.0.0.1:{self.engine_port}" if token else self.engine_url

    def token_file(self, role: Literal["admin", "analyst", "spans"]) -> Path:
        return self.var_dir / f"{role}-token"

    def token_origin(self, role: Literal["admin", "analyst"]) -> str:
        """Where ``engine_url_as`` took (or looked for) a role's token, in words, for error messages."""
        name = f"{role.upper()}_TOKEN"
        if (self.admin_token if role == "admin" else self.analyst_token) is not None:
            return f"the {role} token came from {name}"
        path = self.token_file(role).resolve()
        found = "read from" if path.is_file() else "looked for in"
        return (
            f"{name} is unset, so the {role} token was {found} {path} "
            f"(VAR_DIR={self.var_dir}, from {Path.cwd()}{'' if path.is_file() else ': no such file'})"
        )

    @property
    def resolved_tempo_query_url(self) -> str:
        """Tempo's HTTP API: the setting, else TEMPO_ENDPOINT's host on port 3200; empty without Tempo."""
        if self.tempo_query_url or not self.tempo_endpoint:
            return self.tempo_query_url
        parts = urlsplit(self.tempo_endpoint)
        return f"{parts.scheme}://{parts.hostname}:3200"

    @property
    def engine_traces_url(self) -> str:
        """The control plane's OTLP/HTTP traces endpoint, where the proxy's spans go."""
        return f"{self.engine_url}/v1/traces"

    @property
    def decision_key_file(self) -> Path:
        return self.var_dir / "decision-key"

    @property
    def dispatcher_token_file(self) -> Path:
        return self.var_dir / "dispatcher-token"

    @property
    def scheduler_url(self) -> str:
        return f"http://127.0.0.1:{self.scheduler_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://{self.proxy_host}:{self.proxy_port}"


def _describe(error: dict[str, Any], settings_cls: type[BaseSettings]) -> str:
    if not error["loc"]:  # a rule between settings (``model_validator``): its message names them
        return f"invalid settings: {str(error['msg']).removeprefix('Value error, ')}"
    field = str(error["loc"][0])
    name = field.upper()
    annotation = settings_cls.model_fields[field].annotation if field in settings_cls.model_fields else None
    if name in ACCEPTS:
        accepts = ACCEPTS[name]
    elif annotation is bool:
        accepts = BOOLEAN_ACCEPTS
    elif name.endswith("_PORT"):
        accepts = PORT_ACCEPTS
    else:
        accepts = error["msg"]
    return f"invalid setting {name}={error.get('input')!r}: expected {accepts} ({error['msg']})"


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once; raise ``SettingsError`` naming every bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe(dict(err), Settings) for err in exc.errors()]
        raise SettingsError("\n".join(lines)) from None


def load_provider_keys(catalog: Catalog, environ: Mapping[str, str]) -> dict[str, SecretStr]:
    """Provider keys from ``<KEY_ENV>`` or a secret file named by ``<KEY_ENV>_FILE``.

    Read once at start; a key lives only in the returned ``SecretStr``s, which never
    print their value.
    """
    keys: dict[str, SecretStr] = {}
    for provider, spec in catalog.providers.items():
        if not spec.takes_key:
            continue
        value = environ.get(spec.key_env, "")
        secret_file = environ.get(f"{spec.key_env}_FILE", "")
        if not value and secret_file:
            try:
                value = Path(secret_file).read_text().strip()
            except OSError as exc:
                raise SettingsError(
                    f"invalid setting {spec.key_env}_FILE: cannot read {secret_file} ({exc.strerror})"
                ) from None
        if value:
            keys[provider] = SecretStr(value)
    return keys
