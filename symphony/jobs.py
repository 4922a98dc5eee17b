"""Deferrable jobs: records in Redis, moved from state to state only by atomic scripts.

A job is a chat-completions request an app can wait for: its id, the app (and the key prefix
it was created with), the request, a deadline (event time, UTC ms), an estimate of its
tokens, the providers or models it may use, its state, its result or error, and timestamps.
Jobs live only in Redis (``symphony.keys``: ``job_key``, ``JOBS_QUEUE``, ``JOBS_RUNNING``), so
they survive restarts of every process. The states::

    queued --plan--> planned --claim--> running --finish--> done | failed
      |                 |                  `--a dispatcher died--> failed ("interrupted")
      `-----------------+--cancel--> cancelled

**At most once.** A dispatcher *claims* a job (queued or planned -> running) in one script
before it sends it; the claim records the dispatcher (``owner``) and a fresh ``nonce``. The
proxy *admits* the dispatch once: the nonce must match and no dispatch may have been
admitted before, so even a dispatcher that sent twice would reach a provider once. A job
found ``running`` whose dispatcher no longer beats (its heartbeat key expired: it crashed)
is never sent again: ``fail_interrupted`` fails it with the error ``interrupted``, because
nobody can tell whether the provider ran it. Only a dispatch the proxy never admitted (it could
not be reached, or refused the dispatcher) may be ``release``d back to the queue, by the
dispatcher that claimed it: the release and the admission are each one script on the same
record, so once released the old claim can never be admitted. A dispatch the proxy admitted and
then refused before trying any provider (``NOT_RUN``: every arm over its quota, the app over its
budget or rate, every provider cooling down) did not run either: the proxy ``withdraw``s its
admission, clearing the claim's nonce with it, so the job can be released and that dispatch is
never admitted again. A job that ends (done, failed, cancelled) is
kept for ``RETENTION_MS`` of real time, then expires.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast, get_args

import orjson
import redis.asyncio as aioredis

from symphony.events import new_id
from symphony.keys import JOBS_QUEUE, JOBS_RUNNING, JOBS_VERSION, dispatcher_heartbeat_key, job_key

JobState = Literal["queued", "planned", "running", "done", "failed", "cancelled"]
STATES: tuple[str, ...] = get_args(JobState)
WAITING = ("queued", "planned")
INTERRUPTED = "interrupted"
RETENTION_MS = 7 * 24 * 3_600_000  # real time, a key's TTL once the job has ended
HEARTBEAT_TTL_MS = 3_000  # a dispatcher that has not beaten for this long is dead
# What the decision of a job's dispatch records of the job, in its ``overrides`` (``Job.decision_overrides``).
DECISION_FIELDS = ("job", "job_deadline_ms", "job_created_ms", "job_tokens", "job_providers")
ID_PATTERN = re.compile(r"job_[0-9A-HJKMNP-TV-Z]{26}")
# The proxy's error codes for a request it refused before trying any provider: an admitted dispatch
# answered with one of them did not run (its admission is withdrawn), so it may wait and be sent again.
# Not ``rate_limit_exceeded``: a provider's own 429, relayed, carries it too.
NOT_RUN = frozenset({"quota_exhausted", "budget_exhausted", "app_rate_limited", "providers_unavailable"})

# KEYS: job, queue, version. ARGV: id, deadline_ms, then field, value pairs.
CREATE_LUA = """
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
"""

# KEYS: job. ARGV: provider, at_ms, now. Waiting jobs only.
PLAN_LUA = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'planned' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'planned', 'planned_provider', ARGV[1], 'planned_ms', ARGV[2],
  'updated_ms', ARGV[3])
return 1
"""

# KEYS: job, queue, running, heartbeat of owner. ARGV: id, owner, nonce, provider, now.
# Only a live dispatcher (its heartbeat present) claims, and only a waiting job.
CLAIM_LUA = """
if redis.call('EXISTS', KEYS[4]) == 0 then return 'dead' end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'planned' then return state or 'missing' end
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[2], 'nonce', ARGV[3], 'provider', ARGV[4],
  'started_ms', ARGV[5], 'updated_ms', ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 'claimed'
"""

# KEYS: job. ARGV: nonce, now. The proxy admits one dispatch per claim.
ADMIT_LUA = """
local f = redis.call('HMGET', KEYS[1], 'state', 'nonce', 'admitted_ms')
if f[1] ~= 'running' then return {'state'} end
if ARGV[1] == '' or f[2] ~= ARGV[1] then return {'nonce'} end
if f[3] and f[3] ~= '' then return {'admitted'} end
redis.call('HSET', KEYS[1], 'admitted_ms', ARGV[2])
return {'ok', redis.call('HGETALL', KEYS[1])}
"""

# KEYS: job. ARGV: nonce, now. The admitted dispatch of this claim did not run (``NOT_RUN``): its
# admission goes, and the nonce with it, so no dispatch of the claim is admitted again (an empty
# nonce never is) and the dispatcher may release the job.
WITHDRAW_LUA = """
local f = redis.call('HMGET', KEYS[1], 'state', 'nonce', 'admitted_ms')
if f[1] ~= 'running' or ARGV[1] == '' or f[2] ~= ARGV[1] or not f[3] or f[3] == '' then return 0 end
redis.call('HSET', KEYS[1], 'admitted_ms', '', 'nonce', '', 'updated_ms', ARGV[2])
return 1
"""

# KEYS: job, running. ARGV: id, owner, state, now, retention_ms, then field, value pairs.
# Only the dispatcher that claimed the job finishes it, and only while it is running.
FINISH_LUA = """
local f = redis.call('HMGET', KEYS[1], 'state', 'owner')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'finished_ms', ARGV[4], 'updated_ms', ARGV[4])
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS: job, queue, running. ARGV: id, owner, now.
# A dispatch the proxy never admitted did not run: its dispatcher may put the job back in the queue.
RELEASE_LUA = """
local f = redis.call('HMGET', KEYS[1], 'state', 'owner', 'admitted_ms', 'deadline_ms')
if f[1] ~= 'running' or f[2] ~= ARGV[2] or (f[3] and f[3] ~= '') then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'owner', '', 'nonce', '', 'provider', '', 'started_ms', '',
  'updated_ms', ARGV[3])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], f[4], ARGV[1])
return 1
"""

# KEYS: job, running, heartbeat of its owner. ARGV: id, now, retention_ms.
INTERRUPT_LUA = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then redis.call('SREM', KEYS[2], ARGV[1]) return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'failed', 'error', 'interrupted', 'finished_ms', ARGV[2],
  'updated_ms', ARGV[2])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: job, queue, version. ARGV: id, app, now, retention_ms.
# Returns 'cancelled' (now or before), 'missing' (no such job for this app) or the state that forbids it.
CANCEL_LUA = """
local f = redis.call('HMGET', KEYS[1], 'app', 'state')
if not f[1] or f[1] ~= ARGV[2] then return 'missing' end
if f[2] ~= 'queued' and f[2] ~= 'planned' then return f[2] end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_ms', ARGV[3], 'updated_ms', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 'cancelled'
"""


def new_job_id(now_ms: int) -> str:
    return f"job_{new_id(now_ms)}"


def well_formed(job_id: str) -> bool:
    return ID_PATTERN.fullmatch(job_id) is not None


@dataclass(frozen=True)
class Job:
    """One job's record. ``providers`` and ``models`` are what it may use (both empty: any)."""

    id: str
    app: str
    request: dict[str, Any]
    deadline_ms: int
    tokens: int
    providers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # catalog arms, "provider/model"
    key_prefix: str = ""  # the app key it was created with ("" when auth is off)
    task: str = "chat"  # the task its request is routed and learned as (``x-symphony-task``)
    state: JobState = "queued"
    created_ms: int = 0
    updated_ms: int = 0
    planned_provider: str = ""  # the plan's window, while planned
    planned_ms: int | None = None  # when the plan sends it
    provider: str = ""  # the provider its dispatch was limited to ("" any it may use)
    owner: str = ""  # the dispatcher that claimed it
    nonce: str = field(default="", repr=False)  # the claim's secret, admitted once by the proxy
    started_ms: int | None = None
    admitted_ms: int | None = None
    finished_ms: int | None = None
    status: int | None = None  # the HTTP status of its dispatch
    result: dict[str, Any] | None = None  # the chat.completion, when done
    error: str = ""

    def eligible_providers(self, every: Collection[str]) -> frozenset[str]:
        """The providers it may run on: its own, its models', else every one of ``every``."""
        if self.providers:
            return frozenset(self.providers)
        if self.models:
            return frozenset(model.split("/", 1)[0] for model in self.models)
        return frozenset(every)

    def decision_overrides(self) -> dict[str, str]:
        """What the decision of its dispatch records of it (``DECISION_FIELDS``): its id and terms, the
        providers it allows sorted and comma separated (empty: any). The scheduler's report reads them."""
        allowed = ",".join(sorted(self.eligible_providers(())))
        values = (self.id, self.deadline_ms, self.created_ms, self.tokens, allowed)
        return dict(zip(DECISION_FIELDS, map(str, values), strict=True))

    def to_fields(self) -> dict[str, str]:
        values = asdict(self)
        values["request"] = orjson.dumps(self.request).decode()
        values["result"] = "" if self.result is None else orjson.dumps(self.result).decode()
        values["providers"] = ",".join(self.providers)
        values["models"] = ",".join(self.models)
        return {name: "" if value is None else str(value) for name, value in values.items()}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes]) -> Job:
        text = {k.decode(): v.decode() for k, v in fields.items()}

        def optional(name: str) -> int | None:
            return int(text[name]) if text.get(name) else None

        return cls(
            id=text["id"],
            app=text["app"],
            request=orjson.loads(text["request"]),
            deadline_ms=int(text["deadline_ms"]),
            tokens=int(text["tokens"]),
            providers=tuple(p for p in text.get("providers", "").split(",") if p),
            models=tuple(m for m in text.get("models", "").split(",") if m),
            key_prefix=text.get("key_prefix", ""),
            task=text.get("task") or "chat",
            state=cast(JobState, text["state"]),
            created_ms=int(text.get("created_ms") or 0),
            updated_ms=int(text.get("updated_ms") or 0),
            planned_provider=text.get("planned_provider", ""),
            planned_ms=optional("planned_ms"),
            provider=text.get("provider", ""),
            owner=text.get("owner", ""),
            nonce=text.get("nonce", ""),
            started_ms=optional("started_ms"),
            admitted_ms=optional("admitted_ms"),
            finished_ms=optional("finished_ms"),
            status=optional("status"),
            result=orjson.loads(text["result"]) if text.get("result") else None,
            error=text.get("error", ""),
        )

    def public(self) -> dict[str, Any]:
        """What its app may read (``GET /v1/jobs/{id}``): never the owner, nonce or key prefix."""
        shown = {
            "id": self.id,
            "object": "job",
            "state": self.state,
            "deadline_ms": self.deadline_ms,
            "tokens": self.tokens,
            "task": self.task,
            "providers": list(self.providers),
            "models": list(self.models),
            "created_ms": self.created_ms,
            "planned_provider": self.planned_provider or None,
            "planned_ms": self.planned_ms,
            "started_ms": self.started_ms,
            "finished_ms": self.finished_ms,
        }
        if self.state == "done":
            shown["result"] = self.result
        if self.state == "failed":
            shown["error"] = self.error
            shown["status"] = self.status
        return shown


def _flat(fields: dict[str, str]) -> list[str]:
    return [part for pair in fields.items() for part in pair]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class JobStore:
    """The job records in Redis and every transition between states (one script each)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._create = client.register_script(CREATE_LUA)
        self._plan = client.register_script(PLAN_LUA)
        self._claim = client.register_script(CLAIM_LUA)
        self._admit = client.register_script(ADMIT_LUA)
        self._withdraw = client.register_script(WITHDRAW_LUA)
        self._finish = client.register_script(FINISH_LUA)
        self._interrupt = client.register_script(INTERRUPT_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._cancel = client.register_script(CANCEL_LUA)

    async def create(self, job: Job) -> None:
        keys = [job_key(job.id), JOBS_QUEUE, JOBS_VERSION]
        await self._create(keys=keys, args=[job.id, job.deadline_ms, *_flat(job.to_fields())])

    async def get(self, job_id: str) -> Job | None:
        fields = cast(dict[bytes, bytes], await self._client.hgetall(job_key(job_id)))
        return Job.from_fields(fields) if fields else None

    async def version(self) -> int:
        return int(await self._client.get(JOBS_VERSION) or 0)

    async def waiting(self) -> list[Job]:
        """Every queued or planned job, earliest deadline first."""
        ids = [_text(i) for i in await self._client.zrange(JOBS_QUEUE, 0, -1)]
        async with self._client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(job_key(job_id))
            records: list[dict[bytes, bytes]] = await pipe.execute()
        jobs = [Job.from_fields(fields) for fields in records if fields]
        return [job for job in jobs if job.state in WAITING]

    async def running(self) -> list[str]:
        return sorted(_text(i) for i in await self._client.smembers(JOBS_RUNNING))

    async def mark_planned(self, job_id: str, provider: str, at_ms: int, now_ms: int) -> bool:
        return bool(await self._plan(keys=[job_key(job_id)], args=[provider, at_ms, now_ms]))

    async def cancel(self, job_id: str, app: str, now_ms: int) -> str:
        """``cancelled``, ``missing`` (no such job of ``app``), or the state that forbids it."""
        keys = [job_key(job_id), JOBS_QUEUE, JOBS_VERSION]
        return _text(await self._cancel(keys=keys, args=[job_id, app, now_ms, RETENTION_MS]))

    async def heartbeat(self, owner: str, ttl_ms: int = HEARTBEAT_TTL_MS) -> None:
        await self._client.set(dispatcher_heartbeat_key(owner), "1", px=ttl_ms)

    async def stop_beating(self, owner: str) -> None:
        await self._client.delete(dispatcher_heartbeat_key(owner))

    async def claim(self, job_id: str, owner: str, provider: str, now_ms: int) -> str | None:
        """The claim's nonce when this (live) dispatcher now holds the job; None when it may not send it."""
        nonce = secrets.token_urlsafe(18)
        keys = [job_key(job_id), JOBS_QUEUE, JOBS_RUNNING, dispatcher_heartbeat_key(owner)]
        outcome = _text(await self._claim(keys=keys, args=[job_id, owner, nonce, provider, now_ms]))
        return nonce if outcome == "claimed" else None

    async def admit(self, job_id: str, nonce: str, now_ms: int) -> Job | str:
        """The job, when this is the one admitted dispatch of its claim; else why not."""
        reply = await self._admit(keys=[job_key(job_id)], args=[nonce, now_ms])
        if _text(reply[0]) != "ok":
            return _text(reply[0])
        flat = reply[1]
        return Job.from_fields(dict(zip(flat[::2], flat[1::2], strict=True)))

    async def withdraw(self, job_id: str, nonce: str, now_ms: int) -> bool:
        """Undo the admission of this claim's dispatch, which did not run (``NOT_RUN``); False if it
        was not the admitted dispatch of the job's current claim."""
        return bool(await self._withdraw(keys=[job_key(job_id)], args=[nonce, now_ms]))

    async def finish(
        self,
        job: Job,
        owner: str,
        now_ms: int,
        *,
        status: int | None,
        result: dict[str, Any] | None = None,
        error: str = "",
    ) -> bool:
        """Record how the dispatch ended: done with ``result``, else failed with ``error``."""
        state = "done" if result is not None else "failed"
        ended = replace(job, status=status, result=result, error=error)
        fields = {
            name: value for name, value in ended.to_fields().items() if name in ("status", "result", "error")
        }
        keys = [job_key(job.id), JOBS_RUNNING]
        args: list[str | int] = [job.id, owner, state, now_ms, RETENTION_MS, *_flat(fields)]
        return bool(await self._finish(keys=keys, args=args))

    async def release(self, job_id: str, owner: str, now_ms: int) -> bool:
        """Put a job this dispatcher claimed back in the queue, if the proxy never admitted its dispatch."""
        keys = [job_key(job_id), JOBS_QUEUE, JOBS_RUNNING]
        return bool(await self._release(keys=keys, args=[job_id, owner, now_ms]))

    async def fail_interrupted(self, now_ms: int, alive: str = "") -> list[str]:
        """Fail every running job whose dispatcher is dead (``interrupted``); their ids.

        ``alive`` is the caller's own owner id: its jobs are spared even if its heartbeat lapsed (a
        long pause of its process), since it knows they are in flight and will finish them."""
        failed = []
        for job_id in await self.running():
            owner = _text(await self._client.hget(job_key(job_id), "owner") or b"")
            if alive and owner == alive:
                continue
            keys = [job_key(job_id), JOBS_RUNNING, dispatcher_heartbeat_key(owner)]
            if await self._interrupt(keys=keys, args=[job_id, now_ms, RETENTION_MS]):
                failed.append(job_id)
        return failed
