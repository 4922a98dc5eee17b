"""Jobs the scheduler's dispatcher sends: checked, admitted once, served as the job's app.

The dispatcher holds no app key. It sends a job it has claimed (``symphony.jobs``) to
``POST /v1/chat/completions`` with ``Authorization: Bearer <DISPATCHER_TOKEN>``,
``x-symphony-job: <id>`` and ``x-symphony-dispatch: <its claim's nonce>``. The proxy checks the
token, then admits the dispatch in one Redis script (the job is running, the nonce is its
claim's, and no dispatch of that claim was admitted before), so a job reaches a provider at
most once even if a dispatcher sent it twice. The caller is then the app that created the job,
with the app key it was created with (read like any key: a key revoked since refuses the job),
so the job gets that app's budgets, limits and allowed models, its routing, events and traces.
The ``JobGrant`` the caller carries binds the request to the job: the body must be the job's,
and it runs only on the providers the dispatch allows (``proxy.api.openai_api``).

Refusals: 401 for a missing or wrong token or a job whose key is gone or revoked, 403 for any
path but chat completions, 409 when the job is not admitted (not running, another claim's
nonce, already admitted), 503 when Redis does not answer.

A dispatch the proxy admitted and then refused before trying any provider (``symphony.jobs.NOT_RUN``)
did not run: ``JobGrant.withdraw`` undoes its admission (and its claim's nonce, so it is never
admitted again) before the refusal is answered, and the dispatcher queues the job again.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from starlette.datastructures import Headers

from proxy import errors
from proxy.edge.auth import CHALLENGE, JOB_HEADER, Caller, JobGrant
from proxy.edge.key_cache import AppKeyCache
from proxy.resources import ResourceSlot
from symphony.app_keys import AppKey
from symphony.jobs import Job, JobStore
from symphony.redis_server import REDIS_ERRORS

log = logging.getLogger(__name__)

DISPATCH_HEADER = "x-symphony-dispatch"
DISPATCH_PATH = "/v1/chat/completions"


def jobs_unavailable() -> errors.ApiError:
    """Redis, where jobs live, does not answer."""
    return errors.ApiError(
        503,
        "Jobs cannot be read or written right now; retry shortly.",
        type_="api_error",
        code="jobs_unavailable",
        headers=errors.retry_after_header(1),
    )


def _refused(message: str) -> errors.ApiError:
    return errors.ApiError(401, message, code="invalid_api_key", headers=dict(CHALLENGE))


class JobDispatches:
    def __init__(self, token: str, resources: ResourceSlot, keys: Callable[[], AppKeyCache | None]) -> None:
        self._token = token.encode()
        self._resources = resources
        self._keys = keys

    async def __call__(self, headers: Headers, path: str) -> Caller:
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._token):
            raise _refused("A job dispatch needs the dispatcher's token.")
        if path != DISPATCH_PATH:
            raise errors.ApiError(
                403, f"Jobs are dispatched through {DISPATCH_PATH} only.", type_="permission_error"
            )
        job_id, nonce = headers.get(JOB_HEADER, ""), headers.get(DISPATCH_HEADER, "")
        resources = self._resources.get()
        try:
            admitted = await JobStore(resources.redis).admit(job_id, nonce, resources.clock.now_ms())
        except REDIS_ERRORS:
            raise jobs_unavailable() from None
        if not isinstance(admitted, Job):
            raise errors.ApiError(
                409,
                f"Job {job_id} is not admitted ({admitted}): a job is sent once, "
                "by the dispatcher that claimed it.",
                param=JOB_HEADER,
                code="job_not_admitted",
            )
        return Caller(
            admitted.app, await self._key(admitted), _grant(admitted, self._withdrawal(job_id, nonce))
        )

    def _withdrawal(self, job_id: str, nonce: str) -> Callable[[], Awaitable[None]]:
        async def withdraw() -> None:
            resources = self._resources.get()
            try:
                await JobStore(resources.redis).withdraw(job_id, nonce, resources.clock.now_ms())
            except REDIS_ERRORS as exc:  # the dispatcher then fails the job, as it did before withdrawals
                log.warning("job %s did not run, but its admission could not be withdrawn (%r)", job_id, exc)

        return withdraw

    async def _key(self, job: Job) -> AppKey | None:
        keys = self._keys()
        if not job.key_prefix or keys is None:
            return None  # created with auth off
        record = await keys.get(job.key_prefix)
        if record is None or record.revoked_ms is not None:
            raise _refused(f"The app key that created job {job.id} (prefix {job.key_prefix}) is revoked.")
        return record


def _grant(job: Job, withdraw: Callable[[], Awaitable[None]]) -> JobGrant:
    if job.provider:
        providers: frozenset[str] | None = frozenset({job.provider})
    elif job.providers:
        providers = frozenset(job.providers)
    else:
        providers = None
    return JobGrant(job.id, job.request, providers, job.models, job.task, job.decision_overrides(), withdraw)
