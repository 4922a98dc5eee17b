"""Who is calling: every inbound API but ``/health`` and ``/metrics`` needs a Symphony app key.

The key travels as ``Authorization: Bearer <key>`` (the OpenAI SDK, the native
API, and the Anthropic SDK, whose current releases send its ``api_key`` so) or
``x-api-key: <key>`` (Anthropic's older header); both may be sent if they agree.
``AuthMiddleware`` checks it before any handler runs and puts the ``Caller`` (the
app the key belongs to, and its record: budgets, limits, allowed models) in the
request's state; the app name from the key is the one every decision and usage
event carries (``x-symphony-app`` is ignored).

Answers, in the caller's SDK's error shape (``render``): 401 for a missing,
malformed, unknown or revoked key (the body never repeats a key, only a
well-formed key's public prefix), 429 once an address fails too often
(``proxy.edge.auth_failures``: its valid keys are still served, its guesses
refused), 503 when keys cannot be read at all
(``proxy.edge.key_cache``). A key used for a model it may not use is refused later,
with 403, where models are chosen (``proxy.routing.candidates``).

With ``AUTH_DISABLED=true`` no key is asked for: the caller is the app named by
``x-symphony-app`` (else ``default``), with no limits.

A request carrying ``x-symphony-job`` is the scheduler's dispatcher sending a job; it is
checked by ``proxy.edge.job_dispatch`` instead (the dispatcher's token, the job admitted once),
and its caller is the job's app with the job's ``JobGrant``, whatever ``AUTH_DISABLED`` says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy import errors
from proxy.edge.auth_failures import AuthFailures
from proxy.edge.key_cache import AppKeyCache, KeyStoreUnavailable
from symphony.app_keys import AppKey, matches, split_key

PUBLIC_PATHS = frozenset({"/health", "/metrics"})
APP_HEADER = "x-symphony-app"
DEFAULT_APP = "default"
CHALLENGE = {"www-authenticate": 'Bearer realm="symphony"'}
JOB_HEADER = "x-symphony-job"


@dataclass(frozen=True, slots=True)
class JobGrant:
    """A job the dispatcher is sending: the body it must be, and where it may run."""

    id: str
    request: dict[str, Any]
    providers: frozenset[str] | None  # None: any provider its key allows
    models: tuple[str, ...]  # "provider/model"; empty: any
    task: str = "chat"
    overrides: dict[str, str] = field(default_factory=dict)  # what its decision records of the job
    # Undoes the dispatch's admission when the proxy refused it before trying any provider
    # (``symphony.jobs.NOT_RUN``), so the dispatcher may send the job again.
    withdraw: Callable[[], Awaitable[None]] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Caller:
    app: str
    key: AppKey | None = None  # None: auth is disabled (no limits, any model)
    job: JobGrant | None = None  # set when the scheduler's dispatcher sends one of the app's jobs

    def allows(self, provider: str, model: str) -> bool:
        return self.key is None or self.key.allows(provider, model)


def caller_of(request: Request) -> Caller:
    """The caller ``AuthMiddleware`` put in the request's state."""
    caller = request.scope.get("state", {}).get("caller")
    if not isinstance(caller, Caller):
        raise RuntimeError("no caller: the app must be wrapped in AuthMiddleware")
    return caller


class AuthFailure(Exception):
    """A request without a usable key; ``error`` is its 401."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.error = errors.ApiError(401, message, code=code, headers=dict(CHALLENGE))


def presented_key(headers: Headers) -> str:
    """The key the request presents (not yet checked); ``AuthFailure`` when there is none."""
    authorization = headers.get("authorization")
    api_key = (headers.get("x-api-key") or "").strip()
    bearer = ""
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        bearer = token.strip()
        if scheme.lower() != "bearer" or not bearer:
            raise AuthFailure(
                "Malformed Authorization header: send your Symphony app key as "
                "`Authorization: Bearer <key>`.",
                "invalid_api_key",
            )
    if bearer and api_key and bearer != api_key:
        raise AuthFailure(
            "The request carries two different keys (Authorization and x-api-key).", "invalid_api_key"
        )
    key = bearer or api_key
    if not key:
        raise AuthFailure(
            "Missing API key: send your Symphony app key as `Authorization: Bearer <key>` "
            "(or as `x-api-key`). `symphony keys create --app NAME` issues one.",
            "missing_api_key",
        )
    return key


class Authenticator:
    def __init__(self, keys: AppKeyCache, failures: AuthFailures) -> None:
        self._keys = keys
        self._failures = failures

    async def authenticate(self, headers: Headers, address: str) -> Caller:
        """The caller behind the request's key; ``ApiError`` 401, 429 or 503 otherwise."""
        wait = self._failures.blocked_for_s(address)
        if wait is not None:
            return await self._while_blocked(headers, address, wait)
        try:
            record = await self._verify(presented_key(headers))
        except AuthFailure as failure:
            wait = await self._failures.failed(address)
            if wait is not None:
                raise too_many_failures(wait) from None
            raise failure.error from None
        return Caller(record.app, record)

    async def _while_blocked(self, headers: Headers, address: str, wait_s: float) -> Caller:
        """A blocked address's key is verified once per prefix in the block (``AuthFailures.may_try``)."""
        try:
            presented = presented_key(headers)
        except AuthFailure:
            raise too_many_failures(wait_s) from None
        parts = split_key(presented)
        if parts is None or not self._failures.may_try(address, parts[0], read=self._keys.known(parts[0])):
            raise too_many_failures(wait_s)
        try:
            record = await self._verify(presented)
        except AuthFailure:
            self._failures.spend(address, parts[0])
            raise too_many_failures(wait_s) from None
        return Caller(record.app, record)

    async def _verify(self, presented: str) -> AppKey:
        parts = split_key(presented)
        if parts is None:
            raise AuthFailure(
                "Malformed API key: Symphony app keys look like `sk-sym-<prefix>-<secret>`.",
                "invalid_api_key",
            )
        prefix, key = parts
        try:
            record = await self._keys.get(prefix)
        except KeyStoreUnavailable:
            raise errors.ApiError(
                503,
                "App keys cannot be checked right now; retry shortly.",
                type_="api_error",
                code="auth_unavailable",
                headers=errors.retry_after_header(1),
            ) from None
        if record is None or not matches(record, key):
            raise AuthFailure(f"Incorrect API key provided (prefix {prefix}).", "invalid_api_key")
        if record.revoked_ms is not None:
            raise AuthFailure(f"The API key with prefix {prefix} has been revoked.", "revoked_api_key")
        return record


def too_many_failures(wait_s: float) -> errors.ApiError:
    return errors.ApiError(
        429,
        "Too many failed authentications from this address; retry after "
        f"{errors.retry_after_header(wait_s)['retry-after']} s.",
        type_="rate_limit_exceeded",
        code="too_many_auth_failures",
        headers=errors.retry_after_header(wait_s),
    )


Render = Callable[[str, errors.ApiError], Response]
# (headers, path) -> the caller of a job dispatch (``proxy.edge.job_dispatch``); ApiError if refused
DispatchCheck = Callable[[Headers, str], Awaitable[Caller]]


def no_dispatches(headers: Headers, path: str) -> Awaitable[Caller]:
    raise errors.ApiError(
        401,
        "This proxy accepts no job dispatches: it has no DISPATCHER_TOKEN.",
        code="invalid_api_key",
        headers=dict(CHALLENGE),
    )


class AuthMiddleware:
    """Authenticates every request but those to ``PUBLIC_PATHS``; ``authenticator`` None: auth is off."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator | None,
        render: Render,
        dispatches: DispatchCheck = no_dispatches,
    ) -> None:
        self._app = app
        self._authenticator = authenticator
        self._render = render
        self._dispatches = dispatches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            if JOB_HEADER in headers:
                caller = await self._dispatches(headers, scope["path"])
            elif self._authenticator is None:
                caller = Caller(headers.get(APP_HEADER) or DEFAULT_APP)
            else:
                client = scope.get("client")
                caller = await self._authenticator.authenticate(headers, client[0] if client else "unknown")
        except errors.ApiError as error:
            await self._render(scope["path"], error)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self._app(scope, receive, send)
