"""How the simulator answers one generation request, whatever the provider's wire format.

In order: the provider's auth headers (with ``keys``, only the provider's key is
accepted: a wrong one gets a 401 that echoes it masked, as OpenAI's does, which is
what a proxy must never pass on); the request parsed into a ``Prompt``; the
model known; a fault drawn (hang, 429, 5xx); the answer planned; the rate-limit
window admits it (or a real 429); then the answer, after the model's latency (plus
any slow-first-token fault) on the shared clock. Every answer, errors included,
carries the provider's rate-limit headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from simulator import embeddings
from simulator.faults import FAULT_RETRY_AFTER_S, Faults
from simulator.generation import plan_completion
from simulator.latency import Latency, Pacer, latency_for
from simulator.limits import RateLimited, RateLimiter
from simulator.wire import LimitSnapshot, Quota, Reply, SimError, Wire, masked
from symphony.catalog import Catalog
from symphony.clock import Clock, event_seconds_to_real, sleep
from symphony.events import new_id

JSON = "application/json"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
HANG_MAX_S = 600.0  # event seconds a hung request waits for its client to give up

Endpoint = Callable[[Request], Awaitable[Response]]


class Simulator:
    """The generation handlers, over one clock, one catalog, rate limits and faults."""

    def __init__(
        self,
        clock: Clock,
        catalog: Catalog,
        *,
        seed: int | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> None:
        self.clock = clock
        self.catalog = catalog
        self.keys = dict(keys or {})  # provider -> the only key it accepts (any key when absent)
        self.refused_keys: Counter[str] = Counter()  # per provider, requests refused for a wrong key
        self.rng = random.Random(seed)
        providers = list(catalog.providers)
        self.limits = RateLimiter(clock, providers)
        self.faults = Faults(providers, seed)

    def generate_endpoint(self, provider: str, wire: Wire) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                return await self._generate(provider, wire, request)
            except RateLimited as limited:
                message, retry_after_s = _limit_message(provider, limited), limited.retry_after_s
                quota = Quota(limited.model, limited.what)
                error = SimError(
                    429, message, code="rate_limit_exceeded", retry_after_s=retry_after_s, quota=quota
                )
                return self._error(wire, error, limited.snapshot)
            except SimError as error:
                return self._error(wire, error, self.limits.peek(provider))

        return endpoint

    def models_endpoint(self, provider: str, wire: Wire) -> Endpoint:
        models = list(self.catalog.providers[provider].models)

        async def endpoint(request: Request) -> Response:
            try:
                self._authenticate(provider, wire, request)
            except SimError as error:
                return self._error(wire, error, self.limits.peek(provider))
            return Response(wire.models_body(models, self.clock.now_ms()), media_type=JSON)

        return endpoint

    def embeddings_endpoint(self, provider: str, wire: Wire) -> Endpoint:
        """``POST /embeddings``: faults and rate limits as for generation, then the vectors."""
        models = self.catalog.providers[provider].embeddings

        async def endpoint(request: Request) -> Response:
            try:
                self._authenticate(provider, wire, request)
                wanted = embeddings.parse(await request.body())
                spec = models.get(wanted.model)
                if spec is None:
                    message = f"The model `{wanted.model}` does not exist or you do not have access to it."
                    raise SimError(404, message, code="model_not_found")
                if wanted.dimensions is not None and wanted.dimensions > spec.dimensions:
                    message = f"dimensions: {wanted.model} has at most {spec.dimensions}"
                    raise SimError(400, message, param="dimensions")
                await self._fault(provider, wire, request)
                answer, tokens = embeddings.body(wanted, wanted.dimensions or spec.dimensions)
                snapshot = self.limits.admit(provider, tokens, 0)
                await sleep(self.clock, latency_for(provider, wanted.model).ttft_s)
                return Response(answer, media_type=JSON, headers=wire.limit_headers(snapshot))
            except RateLimited as limited:
                error = SimError(
                    429,
                    _limit_message(provider, limited),
                    code="rate_limit_exceeded",
                    retry_after_s=limited.retry_after_s,
                )
                return self._error(wire, error, limited.snapshot)
            except SimError as error:
                return self._error(wire, error, self.limits.peek(provider))

        return endpoint

    async def _fault(self, provider: str, wire: Wire, request: Request) -> None:
        """The provider's injected fault, if one is drawn: a hang (then a 504), a 429 or a 5xx."""
        fault = self.faults.draw(provider)
        if fault == "hang":
            await self._hang(request)
            raise SimError(504, "The request timed out.")
        if fault == "429":
            message = f"Rate limit reached for {provider} (injected fault). Please try again later."
            raise SimError(429, message, code="rate_limit_exceeded", retry_after_s=FAULT_RETRY_AFTER_S)
        if fault == "5xx":
            status = self.faults.server_status(wire.server_error_statuses)
            raise SimError(status, "The server had an error while processing your request (injected fault).")

    def _authenticate(self, provider: str, wire: Wire, request: Request) -> None:
        key = wire.authenticate(request.headers, request.query_params)
        expected = self.keys.get(provider)
        if expected is not None and key != expected:
            self.refused_keys[provider] += 1
            raise SimError(
                401,
                f"Incorrect API key provided: {masked(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    async def _generate(self, provider: str, wire: Wire, request: Request) -> Response:
        self._authenticate(provider, wire, request)
        prompt = wire.parse(await request.body(), request.path_params, request.query_params)
        if prompt.model not in self.catalog.providers[provider].models:
            message = f"The model `{prompt.model}` does not exist or you do not have access to it."
            raise SimError(404, message, code="model_not_found")
        await self._fault(provider, wire, request)
        completion = plan_completion(self.rng, provider, prompt)
        try:
            snapshot = self.limits.admit(provider, completion.prompt_tokens, completion.completion_tokens)
        except RateLimited as limited:
            limited.model = prompt.model
            raise
        now_ms = self.clock.now_ms()
        reply = Reply(new_id(now_ms), now_ms, prompt.model, completion, include_usage=prompt.include_usage)
        latency = latency_for(provider, prompt.model)
        slow_s = self.faults.spec(provider).slow_ttft_ms / 1000
        headers = wire.limit_headers(snapshot)
        if prompt.stream:
            frames = self._stream(wire, reply, latency, slow_s)
            return StreamingResponse(frames, media_type=wire.stream_media_type, headers=SSE_HEADERS | headers)
        await sleep(self.clock, slow_s + latency.total_s(completion.completion_tokens))
        return Response(wire.body(reply), media_type=JSON, headers=headers)

    async def _stream(
        self, wire: Wire, reply: Reply, latency: Latency, slow_s: float
    ) -> AsyncIterator[bytes]:
        """The frames on time: nothing before the first token, then the model's pace."""
        pacer = Pacer(self.clock, latency)
        await sleep(self.clock, slow_s + latency.ttft_s)
        tokens_sent = 0
        for frame, tokens in wire.frames(reply):
            for _ in range(tokens if tokens_sent else tokens - 1):
                await pacer.token()
            tokens_sent += tokens
            yield frame

    async def _hang(self, request: Request) -> None:
        """Answer nothing until the client hangs up (or ``HANG_MAX_S`` of event time passes)."""

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(disconnected(), event_seconds_to_real(self.clock, HANG_MAX_S))

    def _error(self, wire: Wire, error: SimError, snapshot: LimitSnapshot) -> Response:
        headers = wire.limit_headers(snapshot)
        if error.retry_after_s is not None:
            headers["retry-after"] = str(error.retry_after_s)
        return Response(wire.error(error), status_code=error.status, media_type=JSON, headers=headers)


def _limit_message(provider: str, limited: RateLimited) -> str:
    return (
        f"Rate limit reached for {provider} on {limited.what} per minute. "
        f"Please try again in {limited.retry_after_s}s."
    )
