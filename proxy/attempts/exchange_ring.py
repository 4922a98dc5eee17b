"""The exchanges that may become evidence, kept for a while in a bounded ring in Redis.

With the live flag ``evidence_bundles`` on, the attempt loop hands every attempt that failed
(an error status, a timeout, no answer) or answered slower than the latency SLO
(``SLO_P95_MS``) to ``ExchangeRing.keep``: the request as sent and the provider's answer
(status, headers, body), **redacted here** (``symphony.redaction``, with the provider keys
this proxy holds by value) and each body cut at ``MAX_BODY_BYTES``. They are pushed to one
Redis list (``symphony.keys.EXCHANGES_KEY``) trimmed to the last ``RING_SIZE``: the engine's
evidence capture reads a decision's exchanges from it (``sinks.evidence.capture``). A streamed
answer's body is not kept (the relay does not hold it); its status and headers are.

Writing never holds up a request: a task of its own, errors logged and dropped. Attempts that
answered in time are not kept: they are no incident's evidence, and the ring stays small.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from proxy.adapters.base import UpstreamRequest
from symphony.keys import EXCHANGES_KEY
from symphony.redaction import Redactor

log = logging.getLogger(__name__)

RING_SIZE = 2000
MAX_BODY_BYTES = 64 << 10
TTL_S = 24 * 3600


class ExchangeRing:
    def __init__(
        self,
        client: aioredis.Redis,
        enabled: Callable[[], bool],
        redactor: Redactor,
        slow_s: float,
    ) -> None:
        self._client = client
        self._enabled = enabled
        self._redactor = redactor
        self._slow_s = slow_s
        self._writing: set[asyncio.Task[None]] = set()

    def wanted(self, failed: bool, elapsed_s: float) -> bool:
        """Whether an attempt's exchange is kept: failed or slow, while the flag is on."""
        return (failed or elapsed_s > self._slow_s) and self._enabled()

    def keep(
        self,
        decision_id: str,
        attempt: int,
        at_ms: int,
        request: UpstreamRequest,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        redact = self._redactor
        record = {
            "decision_id": decision_id,
            "attempt": attempt,
            "at_ms": at_ms,
            "method": "POST",
            "url": request.url,
            "request_headers": redact.headers(dict(request.headers)),
            "request_body": redact.bytes(request.body[:MAX_BODY_BYTES]).decode(),
            "status": status,
            "response_headers": redact.headers(dict(headers)),
            "response_body": redact.bytes(body[:MAX_BODY_BYTES]).decode(),
        }
        task = asyncio.get_running_loop().create_task(self._push(json.dumps(record)))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _push(self, record: str) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.rpush(EXCHANGES_KEY, record)
                pipe.ltrim(EXCHANGES_KEY, -RING_SIZE, -1)
                pipe.expire(EXCHANGES_KEY, TTL_S)
                await pipe.execute()
        except RedisError as exc:
            log.warning("exchange not kept for evidence: %s", exc)
