"""The challenger distribution and the live flags, read from Redis in the background.

The learner publishes ``symphony:policy:challenger`` as JSON ``{"version": str,
"weights": {"provider/model": w}}``. A task polls it every ``interval_s`` and swaps
in the new policy when the version changes, so a request never waits on Redis for
it. Until anything is published the challenger is uniform; when the key goes away
it becomes uniform again; when Redis is unreachable or the value is malformed the
last good policy keeps serving. The same read fetches the live rollback flags
(``symphony.flags``): ``flags.challenger_share`` is the share the router gives the
challenger, so ``symphony flags --traffic-split 0`` reaches every replica within a poll.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from proxy.periodic import Periodic
from symphony.flags import Flags
from symphony.keys import CHALLENGER_KEY, FLAGS_KEY
from symphony.serving import ChallengerPolicy

log = logging.getLogger(__name__)


class ChallengerFeed:
    def __init__(self, client: aioredis.Redis, defaults: Flags, *, interval_s: float = 1.0) -> None:
        self._client = client
        self._defaults = defaults
        self._raw: bytes | str | None = None
        self._poll = Periodic("symphony-challenger-feed", interval_s, self.refresh)
        self.current = ChallengerPolicy.uniform()
        self.flags = defaults

    def __call__(self) -> ChallengerPolicy:
        return self.current

    async def start(self) -> None:
        """Read once now (a published policy serves from the first request), then poll."""
        await self.refresh()
        self._poll.start()

    async def close(self) -> None:
        await self._poll.close()

    async def refresh(self) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(CHALLENGER_KEY)
                pipe.hgetall(FLAGS_KEY)
                raw, flags = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("challenger policy unreadable (%s); keeping version %s", exc, self.current.version)
            return
        self._set_flags(self._defaults.merged(flags))
        if raw == self._raw:
            return
        self._raw = raw
        if raw is None:
            self.current = ChallengerPolicy.uniform()
            return
        try:
            self.current = ChallengerPolicy.from_json(raw)
        except ValueError as exc:
            log.warning(
                "challenger policy in %s is malformed (%s); keeping version %s",
                CHALLENGER_KEY,
                exc,
                self.current.version,
            )
            return
        log.info("challenger policy version %s", self.current.version)

    def _set_flags(self, flags: Flags) -> None:
        if flags != self.flags:
            log.warning(
                "live flags: learner_enabled=%s traffic_split=%g", flags.learner_enabled, flags.traffic_split
            )
        self.flags = flags
