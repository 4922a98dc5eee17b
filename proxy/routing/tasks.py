"""The tasks routing knows: the champion policy's task tables, and the check a request's task passes.

A request names its task (``x-symphony-task``, the native API's ``task``, a job's ``task``) so the
policy routes it by that task's table and the learner learns per task. A task is a name: lower-case
letters, digits, ``-`` and ``_``, starting with a letter, at most 40 characters; anything else (a
typo such as ``poetry!!``, free text) is refused with a 400 that says so and names the champion's
tasks. A well-formed task the champion has no table for (``reasoning``, say) is routed by its
``default`` table and learned as a task of its own, which is how the learner finds where the
champion is wrong; the answer says both: ``x-symphony-task`` the task, ``x-symphony-task-table``
the table that routed it. No task given is ``chat`` (``default`` if the champion has no ``chat``
table). The set is made once per champion served (``Gateway`` makes a new one when the champion
file changes).
"""

from __future__ import annotations

import re

from proxy import errors
from symphony.catalog import Policy

TASK_HEADER = "x-symphony-task"
TASK_TABLE_HEADER = "x-symphony-task-table"
DEFAULT_TASK = "chat"
DEFAULT_TABLE = "default"
TASK_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
SHOWN_CHARS = 64  # of a refused task, in the error


class Tasks:
    def __init__(self, policy: Policy) -> None:
        self.known = frozenset(policy.tasks)
        self.default = DEFAULT_TASK if DEFAULT_TASK in self.known else DEFAULT_TABLE
        self._listing = ", ".join(sorted(self.known))

    def check(self, task: str | None, param: str) -> str:
        """``task`` if it is a task name, the default when none is given; else a 400 naming ``param``."""
        if not task:
            return self.default
        if task in self.known or TASK_NAME.fullmatch(task):
            return task
        shown = task if len(task) <= SHOWN_CHARS else task[:SHOWN_CHARS] + "…"
        raise errors.ApiError(
            400,
            f"Task {shown!r} in {param} is not a task name: lower-case letters, digits, '-' and '_', "
            f"starting with a letter, at most 40 characters. The champion's tasks are {self._listing} "
            f"(another name is routed by its default table; leave it out for {self.default}).",
            param=param,
            code="invalid_task",
        )

    def table(self, task: str) -> str:
        """The champion's table that routes ``task``."""
        return task if task in self.known else DEFAULT_TABLE
