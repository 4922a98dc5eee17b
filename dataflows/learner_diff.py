"""``GET /console/learner/diff``: the champion against the challenger the learner publishes now.

The same diff ``just learner-promote`` puts in its pull request (``learner.policy_diff``): the
challenger's per-task weight tables proposed as utility tables at the champion's temperature
(``propose``), then per task the arms whose utility changes and the top arm before and after
(``task_changes``). The champion is the one the engine serves its evaluation against
(``POLICY_FILE``); the challenger is read from Redis (``symphony.keys.CHALLENGER_KEY``) at each
call. With none published, or the uniform one, ``challenger_version`` is null and ``reason``
says why; a malformed one raises ``ValueError`` (the route answers 409).
"""

from __future__ import annotations

from typing import Any

import redis

from learner.policy_diff import propose, task_changes
from symphony.catalog import Policy
from symphony.keys import CHALLENGER_KEY
from symphony.serving import UNIFORM_VERSION, ChallengerPolicy


class PolicyDiff:
    def __init__(self, champion: Policy, client: redis.Redis) -> None:
        self._champion = champion
        self._client = client

    def __call__(self) -> dict[str, Any]:
        champion = self._champion
        raw = self._client.get(CHALLENGER_KEY)
        nothing: dict[str, Any] = {
            "champion_version": champion.version,
            "challenger_version": None,
            "tasks": [],
        }
        if not isinstance(raw, bytes):
            return {
                **nothing,
                "reason": "no challenger is published yet (the learner publishes one from traffic)",
            }
        challenger = ChallengerPolicy.from_json(raw)
        if challenger.version == UNIFORM_VERSION:
            return {**nothing, "reason": "the published challenger is the uniform one: nothing to compare"}
        # The proposal's own version only names it; a challenger named as the champion is still compared.
        version = challenger.version if challenger.version != champion.version else f"{challenger.version}+"
        proposed = propose(champion, challenger.tables(champion.tasks), version)
        return {
            "champion_version": champion.version,
            "challenger_version": challenger.version,
            "temperature": champion.temperature,
            "tasks": [
                {
                    "task": change.task,
                    "new": change.new,
                    "top_before": change.top_before,
                    "top_after": change.top_after,
                    "unchanged": change.unchanged,
                    "changes": [
                        {"arm": arm.arm, "before": arm.before, "after": arm.after} for arm in change.changes
                    ],
                }
                for change in task_changes(champion, proposed)
            ],
        }
