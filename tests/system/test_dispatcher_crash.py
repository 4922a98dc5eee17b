"""The dispatcher SIGKILLed while it has jobs in flight, then restarted: no job reaches a provider twice.

The `symphony scheduler` process sends 24 jobs through a real proxy to the simulator, which answers
slowly (1.5 s), so the kill lands while some are running. The restarted dispatcher fails those as
`interrupted` (nobody can tell whether the provider ran them) and sends the rest. The simulator's own
record of the bodies it received counts each job's requests: at most one each, exactly one per done job.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from symphony.clock import wall_ms
from symphony.jobs import INTERRUPTED, Job, JobStore
from symphony.redis_server import RedisServer, free_port
from tests.proxy_stack import ProxyStack, bearer

JOBS = 24
TOKEN = secrets.token_urlsafe(32)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[ProxyStack]:
    with ProxyStack(redis_server, dispatcher_token=SecretStr(TOKEN)) as running:
        running.faults("gemini", slow_ttft_ms=1500)
        yield running


def marker(i: int) -> str:
    return f"crash-job-{i}-end"


def create_jobs(stack: ProxyStack) -> list[str]:
    ids = []
    for i in range(JOBS):
        request = {"model": "auto", "messages": [{"role": "user", "content": marker(i)}], "max_tokens": 8}
        body = {
            "request": request,
            "deadline_ms": wall_ms() + 3_600_000,
            "tokens": 100,
            "providers": ["gemini"],
        }
        answer = httpx.post(f"{stack.base_url}/jobs", json=body, headers=bearer(stack.key), timeout=30)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


def start_dispatcher(stack: ProxyStack, tmp_path: Path, log: Path) -> subprocess.Popen[bytes]:
    proxy = urlsplit(stack.url)
    env = {
        **os.environ,
        "REDIS_URL": stack.settings.redis_url,
        "PROXY_HOST": str(proxy.hostname),
        "PROXY_PORT": str(proxy.port),
        "SCHEDULER_PORT": str(free_port()),
        "DISPATCHER_TOKEN": TOKEN,
        "VAR_DIR": str(tmp_path / "var"),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "scheduler"], cwd=REPO, env=env, stdout=out, stderr=out
        )


def jobs_of(stack: ProxyStack, ids: list[str]) -> list[Job]:
    async def main() -> list[Job]:
        client = aioredis.Redis.from_url(stack.settings.redis_url)
        try:
            store = JobStore(client)
            found = [await store.get(job_id) for job_id in ids]
            return [job for job in found if job is not None]
        finally:
            await client.aclose()

    return asyncio.run(main())


def wait_for(condition: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {condition}")


def test_a_job_is_never_run_twice_across_a_dispatcher_crash(stack: ProxyStack, tmp_path: Path) -> None:
    ids = create_jobs(stack)
    log = tmp_path / "scheduler.log"
    first = start_dispatcher(stack, tmp_path, log)
    try:
        wait_for(
            "a job admitted by the proxy and still running",
            lambda: any(j.state == "running" and j.admitted_ms for j in jobs_of(stack, ids)),
            timeout=60,
        )
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        in_flight = [j.id for j in jobs_of(stack, ids) if j.state == "running"]
        assert in_flight, "the kill came after every job had ended"
        second = start_dispatcher(stack, tmp_path, log)
        try:
            wait_for(
                "every job ended",
                lambda: all(j.state in ("done", "failed") for j in jobs_of(stack, ids)),
                timeout=90,
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    time.sleep(2)  # requests the killed dispatcher left in the proxy finish (or are cut) upstream
    jobs = {job.id: job for job in jobs_of(stack, ids)}
    seen = [sum(marker(i).encode() in body for body in stack.sim_app.bodies) for i in range(JOBS)]
    by_job = dict(zip(ids, seen, strict=True))
    assert max(seen) <= 1, (by_job, log.read_text()[-3000:])
    interrupted = [job_id for job_id, job in jobs.items() if job.error == INTERRUPTED]
    assert set(interrupted) == set(in_flight)
    for job_id, job in jobs.items():
        if job.state == "done":
            assert by_job[job_id] == 1, job_id
        else:
            assert job.error == INTERRUPTED, (job_id, job.error)
    assert len([j for j in jobs.values() if j.state == "done"]) == JOBS - len(interrupted)
