"""Whether the running task was asked to stop, even when the code it awaited lost the request.

``Task.cancel()`` raises ``CancelledError`` at the task's current ``await``; a library that catches
it there and returns normally loses it, and a loop that waits for the next ``CancelledError`` then
runs on, with whoever awaits its end waiting for ever. redis-py's asyncio pipeline does so (8.1.0:
``Pipeline.execute()`` returns its replies while the task is being cancelled; found when a proxy's
breaker publisher would not close on a loaded machine). The request stays counted on the task
(``Task.cancelling()``, Python 3.11) until someone un-cancels it, so a loop can look there.
"""

from __future__ import annotations

import asyncio


def cancel_requested() -> bool:
    """True in a task that was cancelled and has not un-cancelled, whether or not it saw the error."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
