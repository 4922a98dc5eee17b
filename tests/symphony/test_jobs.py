"""Job records in a real Redis: every transition is one script, a job is claimed and admitted once,
and a job whose dispatcher died while it ran is failed, never sent again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis

from symphony.jobs import INTERRUPTED, Job, JobStore, new_job_id, well_formed
from symphony.keys import JOBS_QUEUE, JOBS_RUNNING, job_key
from symphony.redis_server import RedisServer

T = TypeVar("T")
T0 = 1_780_000_000_000
REQUEST = {"model": "auto", "messages": [{"role": "user", "content": "summarise"}]}


def run(redis_server: RedisServer, scenario: Callable[[JobStore, aioredis.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            return await scenario(JobStore(client), client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def job(n: int = 0, app: str = "billing") -> Job:
    return Job(
        id=new_job_id(T0 + n),
        app=app,
        request=REQUEST,
        deadline_ms=T0 + 3_600_000,
        tokens=1_000,
        providers=("openai",),
        key_prefix="abcd1234",
        created_ms=T0,
        updated_ms=T0,
    )


def test_a_job_round_trips_and_waits_in_the_queue(redis_server: RedisServer) -> None:
    async def scenario(store: JobStore, client: aioredis.Redis) -> None:
        created = job()
        assert well_formed(created.id)
        await store.create(created)
        assert await store.get(created.id) == created
        assert [j.id for j in await store.waiting()] == [created.id]
        assert await store.version() == 1
        assert await store.mark_planned(created.id, "openai", T0 + 60_000, T0)
        planned = await store.get(created.id)
        assert planned is not None
        assert (planned.state, planned.planned_provider, planned.planned_ms) == (
            "planned",
            "openai",
            T0 + 60_000,
        )
        assert await store.version() == 1  # planning is no change of the queue
        # the record is the only place a job lives: one hash, one queue entry, all in slot {jobs}
        assert "{jobs}" in job_key(created.id) and "{jobs}" in JOBS_QUEUE and "{jobs}" in JOBS_RUNNING

    run(redis_server, scenario)


def test_a_job_is_claimed_once_and_admitted_once(redis_server: RedisServer) -> None:
    async def scenario(store: JobStore, client: aioredis.Redis) -> None:
        created = job()
        await store.create(created)
        assert await store.claim(created.id, "dead", "openai", T0) is None  # no heartbeat: no claim
        await store.heartbeat("d1")
        await store.heartbeat("d2")
        claims = await asyncio.gather(
            *(store.claim(created.id, owner, "openai", T0) for owner in ("d1", "d2") * 10)
        )
        nonces = [nonce for nonce in claims if nonce is not None]
        assert len(nonces) == 1
        running = await store.get(created.id)
        assert running is not None and running.state == "running" and running.provider == "openai"
        assert await store.waiting() == [] and await store.running() == [created.id]
        assert await store.admit(created.id, "forged", T0) == "nonce"
        admitted = await store.admit(created.id, nonces[0], T0 + 1)
        assert isinstance(admitted, Job) and admitted.app == "billing" and admitted.admitted_ms == T0 + 1
        assert await store.admit(created.id, nonces[0], T0 + 2) == "admitted"  # a resend is refused
        assert await store.cancel(created.id, "billing", T0) == "running"

    run(redis_server, scenario)


def test_only_the_claiming_dispatcher_finishes_and_the_record_then_expires(redis_server: RedisServer) -> None:
    async def scenario(store: JobStore, client: aioredis.Redis) -> None:
        created = job()
        await store.create(created)
        await store.heartbeat("d1")
        assert await store.claim(created.id, "d1", "", T0) is not None
        assert not await store.finish(created, "d2", T0 + 5, status=200, result={"id": "x"})
        assert await store.finish(created, "d1", T0 + 5, status=200, result={"id": "chatcmpl-1"})
        done = await store.get(created.id)
        assert done is not None
        assert (done.state, done.result, done.finished_ms, done.status) == (
            "done",
            {"id": "chatcmpl-1"},
            T0 + 5,
            200,
        )
        assert done.public()["result"] == {"id": "chatcmpl-1"} and "nonce" not in done.public()
        assert await client.pttl(job_key(created.id)) > 0
        assert await store.running() == []
        assert not await store.finish(created, "d1", T0 + 6, status=500, error="again")  # ended: stays done

    run(redis_server, scenario)


def test_a_running_job_of_a_dead_dispatcher_is_failed_as_interrupted_never_resent(
    redis_server: RedisServer,
) -> None:
    async def scenario(store: JobStore, client: aioredis.Redis) -> None:
        orphan, alive = job(1), job(2)
        for created in (orphan, alive):
            await store.create(created)
        await store.heartbeat("crashed", ttl_ms=50)
        await store.heartbeat("alive")
        assert await store.claim(orphan.id, "crashed", "", T0) is not None
        assert await store.claim(alive.id, "alive", "", T0) is not None
        await asyncio.sleep(0.1)  # the crashed dispatcher's heartbeat expires
        assert await store.fail_interrupted(T0 + 9, alive="crashed") == []  # its own jobs, to a live claimer
        assert await store.fail_interrupted(T0 + 10) == [orphan.id]
        failed = await store.get(orphan.id)
        assert failed is not None and (failed.state, failed.error) == ("failed", INTERRUPTED)
        assert await store.claim(orphan.id, "alive", "", T0 + 11) is None
        still = await store.get(alive.id)
        assert still is not None and still.state == "running"
        assert await store.running() == [alive.id]

    run(redis_server, scenario)


def test_only_its_app_cancels_a_job_and_only_while_it_waits(redis_server: RedisServer) -> None:
    async def scenario(store: JobStore, client: aioredis.Redis) -> None:
        created = job()
        await store.create(created)
        assert await store.cancel(created.id, "search", T0) == "missing"
        assert await store.cancel("job_01JABCDEFGHJKMNPQRSTVWXYZ0", "billing", T0) == "missing"
        assert await store.cancel(created.id, "billing", T0 + 1) == "cancelled"
        assert await store.cancel(created.id, "billing", T0 + 2) == "cancelled"
        cancelled = await store.get(created.id)
        assert cancelled is not None and (cancelled.state, cancelled.finished_ms) == ("cancelled", T0 + 1)
        assert await store.waiting() == [] and await store.version() == 2
        await store.heartbeat("d1")
        assert await store.claim(created.id, "d1", "", T0) is None

    run(redis_server, scenario)


def test_a_dispatch_never_admitted_is_released_and_its_old_claim_never_admitted(
    redis_server: RedisServer,
) -> None:
    async def scenario(store: JobStore, client: aioredis.Redis) -> None:
        created = job()
        await store.create(created)
        await store.heartbeat("d1")
        first = await store.claim(created.id, "d1", "openai", T0)
        assert first is not None
        assert not await store.release(created.id, "d2", T0 + 1)  # only its claimer releases it
        assert await store.release(created.id, "d1", T0 + 1)
        released = await store.get(created.id)
        assert released is not None and (released.state, released.owner, released.nonce) == ("queued", "", "")
        assert [j.id for j in await store.waiting()] == [created.id] and await store.running() == []
        assert await store.admit(created.id, first, T0 + 2) == "state"  # the old claim, arriving late
        second = await store.claim(created.id, "d1", "gemini", T0 + 3)
        assert second is not None and second != first
        assert await store.admit(created.id, first, T0 + 4) == "nonce"
        assert isinstance(await store.admit(created.id, second, T0 + 5), Job)
        assert not await store.release(created.id, "d1", T0 + 6)  # admitted: it may have run

    run(redis_server, scenario)
