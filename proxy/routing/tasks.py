"""The tasks routing knows: the champion policy's task tables, and the check a request's task passes.

A request names its task (``x-symphony-task``, the native API's ``task``, a job's ``task``) so the
policy routes it by that task's table and the learner learns per task. A task the champion has no
table for would be routed by its ``default`` table and stored as a task of its own, a typo
(``poetry!!``) included, so it is refused with a 400 that names the known ones. No task given
is ``chat`` (``default`` if the champion has no ``chat`` table). The set is made once per
champion served (``Gateway`` makes a new one when the champion file changes).
"""

from __future__ import annotations

from proxy import errors
from symphony.catalog import Policy

TASK_HEADER = "x-symphony-task"
DEFAULT_TASK = "chat"
SHOWN_CHARS = 64  # of an unknown task, in the error


class Tasks:
    def __init__(self, policy: Policy) -> None:
        self.known = frozenset(policy.tasks)
        self.default = DEFAULT_TASK if DEFAULT_TASK in self.known else "default"
        self._listing = ", ".join(sorted(self.known))

    def check(self, task: str | None, param: str) -> str:
        """``task`` if the champion knows it, the default when none is given; else a 400 naming ``param``."""
        if not task:
            return self.default
        if task in self.known:
            return task
        shown = task if len(task) <= SHOWN_CHARS else task[:SHOWN_CHARS] + "…"
        raise errors.ApiError(
            400,
            f"Unknown task {shown!r} in {param}: the known tasks are {self._listing} "
            f"(leave it out for {self.default}).",
            param=param,
            code="unknown_task",
        )
