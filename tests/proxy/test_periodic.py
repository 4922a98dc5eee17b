"""A periodic step's task ends on ``close()`` even when the step loses the cancel (redis-py's
pipeline returns normally while its task is being cancelled: ``symphony.cancellation``)."""

from __future__ import annotations

import asyncio
import contextlib

from proxy.periodic import Periodic


def test_close_ends_the_loop_when_a_step_swallows_the_cancel() -> None:
    steps = 0
    abandoned = False

    async def swallowing_step() -> None:
        nonlocal steps
        if abandoned:  # the test gave up on close(): end the loop so the test fails instead of hanging
            raise RuntimeError("abandoned")
        steps += 1
        with contextlib.suppress(asyncio.CancelledError):  # returns normally, as a library that loses it does
            await asyncio.sleep(10)

    async def run() -> bool:
        nonlocal abandoned
        periodic = Periodic("swallows", 0.001, swallowing_step)
        periodic.start()
        while steps == 0:  # close() must come while a step is awaited
            await asyncio.sleep(0.001)
        closing = asyncio.ensure_future(periodic.close())
        done, _ = await asyncio.wait([closing], timeout=5)  # not wait_for: it would wait on a hung close
        abandoned = True
        return closing in done

    assert asyncio.run(run()), "close() did not return: the loop ran on after its cancel was swallowed"
    assert steps == 1


def test_close_ends_an_idle_loop() -> None:
    async def step() -> None:
        pass

    async def run() -> None:
        periodic = Periodic("idle", 10.0, step)
        periodic.start()
        await asyncio.sleep(0)
        await asyncio.wait_for(periodic.close(), 5)

    asyncio.run(run())
