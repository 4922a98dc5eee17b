"""Reservations per second and latency of the quota reserve script, beside a plain INCR.

Everything runs in one process against one bundled Redis server, with the same number
of concurrent asyncio clients, through the proxy's own client (``proxy.resources.proxy_redis``),
in this order:

- ``INCR (baseline)``: one ``INCR`` per operation, the cheapest atomic counter Redis has.
- ``reserve (grant)``: Symphony's reservation (one ``EVALSHA`` checking and writing every
  window of an arm: provider and model caps over minute, day and week, plus a
  subscription window). The windows and keys are the policy's, but every cap is raised
  out of the bench's reach, so every operation is a grant that writes every window.
- ``reserve+settle``: a granted reservation and its settlement (what a request really
  costs the proxy), same unreachable caps.
- ``reserve (refusal)``: the policy's real caps, all operations in one simulated minute
  after the model's requests-per-minute cap was used up, so each is an early refusal
  that writes nothing. Its own row, never mixed into the grants.
- ``INCR (redis-py pool)``: the baseline's ``INCR`` through redis-py's own pooled asyncio
  client (a connection per command in flight), which the proxy used before its multiplexed
  client (``symphony.redis_mux``): what the client itself costs.

The ``grants`` column is the share of operations that were grants. The figures of
interest are the ratios to the baseline.

    .venv/bin/python bench/quota_reserve.py                  # 5 s each, 16 clients
    .venv/bin/python bench/quota_reserve.py --duration 10 --clients 32 --json
    .venv/bin/python bench/quota_reserve.py --smoke          # a few seconds; exits 1 if the bench broke
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import redis.asyncio as aioredis

from proxy.resources import proxy_redis
from symphony import clock
from symphony.quotas import DAY_MS, AsyncQuotaStore, Limit, Reservation, load_quota_policy
from symphony.redis_client import async_redis
from symphony.redis_server import RedisServer

PROVIDER, MODEL = "openai", "gpt-4o"  # the arm with the most windows in the policy
UNREACHABLE = 2**50  # a cap no run of this bench can reach
TOKENS, SETTLED_TOKENS = 1, 2

# An operation reports whether it was a grant (True), a refusal (False) or neither (None: INCR).
Operation = Callable[[int], Awaitable[bool | None]]


@dataclass(frozen=True)
class Result:
    name: str
    operations: int
    grants: int
    per_second: float
    p50_us: float
    p99_us: float

    @property
    def grant_share(self) -> float | None:
        return None if self.name.startswith("INCR") else self.grants / self.operations


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def _drive(
    operation: Operation, clients: int, seconds: float, first: int, at_least: int = 0
) -> tuple[list[float], int, float]:
    """Run ``operation`` from ``clients`` coroutines for ``seconds`` and ``at_least`` operations.

    Returns the latencies (s), the grants and the seconds it took. Operation numbers
    start at ``first`` and never repeat within one store, so each grant lands at its own
    simulated millisecond.
    """
    latencies: list[float] = []
    grants = 0
    started_at = clock.monotonic()
    deadline = started_at + seconds

    async def client(index: int) -> None:
        nonlocal grants
        n = first + index
        while clock.monotonic() < deadline or len(latencies) < at_least:
            started = clock.monotonic()
            granted = await operation(n)
            latencies.append(clock.monotonic() - started)
            grants += granted is True
            n += clients

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, grants, clock.monotonic() - started_at


def _summarise(name: str, latencies: list[float], grants: int, seconds: float) -> Result:
    cuts = statistics.quantiles(latencies, n=100)
    return Result(name, len(latencies), grants, len(latencies) / seconds, cuts[49] * 1e6, cuts[98] * 1e6)


def unreachable(limits: Sequence[Limit]) -> list[Limit]:
    """The same windows and keys, with caps the bench cannot reach."""
    return [dataclasses.replace(limit, cap=UNREACHABLE) for limit in limits]


async def _markers(client: aioredis.Redis) -> int:
    """The reservations made so far: a grant writes its marker once every window is written."""
    return sum([1 async for _ in client.scan_iter(f"symphony:reservation:{{{PROVIDER}}}:*", count=1000)])


def minute_request_cap(limits: Sequence[Limit]) -> int:
    """The arm's tightest requests-per-minute cap in the policy."""
    return min(limit.cap for limit in limits if limit.metric == "requests" and limit.window.name == "minute")


async def measure(
    url: str, clients: int, seconds: float, warmup: float = 0.5, at_least: int = 0
) -> tuple[list[Result], int]:
    """The four rows, and the requests the model's minute buckets hold from the measured grant rows.

    Each row runs ``seconds`` and at least ``at_least`` operations.
    """
    client = proxy_redis(url)  # the proxy's client: one multiplexed connection
    pooled = async_redis(url, max_connections=clients)  # redis-py's own pooled client, for comparison
    store = AsyncQuotaStore(client)
    policy_limits = load_quota_policy().limits(PROVIDER, MODEL)
    open_limits = unreachable(policy_limits)
    now = clock.wall_ms()
    refused_at = now + 365 * DAY_MS  # past every window the grant rows wrote (they span ~70 days)

    async def incr(n: int) -> None:
        await client.incr("bench:baseline")

    async def pooled_incr(n: int) -> None:
        await pooled.incr("bench:baseline")

    async def reserve(n: int) -> bool:
        outcome = await store.reserve(open_limits, now + n, provider=PROVIDER, model=MODEL, tokens=TOKENS)
        return isinstance(outcome, Reservation)

    async def reserve_and_settle(n: int) -> bool:
        outcome = await store.reserve(open_limits, now + n, provider=PROVIDER, model=MODEL, tokens=TOKENS)
        if isinstance(outcome, Reservation):
            await store.settle(outcome, SETTLED_TOKENS)
            return True
        return False

    async def refused(n: int) -> bool:
        outcome = await store.reserve(
            policy_limits, refused_at, provider=PROVIDER, model=MODEL, tokens=TOKENS
        )
        return isinstance(outcome, Reservation)

    results: list[Result] = []
    first = 0
    rows: tuple[tuple[str, Operation], ...] = (
        ("INCR (baseline)", incr),
        ("reserve (grant)", reserve),
        ("reserve+settle", reserve_and_settle),
        ("reserve (refusal)", refused),
        ("INCR (redis-py pool)", pooled_incr),
    )
    requests_granted = warmup_grants = 0
    for name, operation in rows:
        if operation is refused:  # use up the model's requests per minute, then measure refusals
            requests_granted = await _markers(client)
            while await refused(0):
                pass
        say(f"{name}: {clients} clients for {seconds:g}s")
        _, warm, _ = await _drive(operation, clients, warmup, first)  # warm-up: connections, script cache
        if operation is not refused:
            warmup_grants += warm
        first += 10**9  # far past any operation number the warm-up reached (~11.6 simulated days)
        latencies, grants, took = await _drive(operation, clients, seconds, first, at_least)
        first += 10**9
        results.append(_summarise(name, latencies, grants, took))
    await client.aclose()
    await pooled.aclose()
    return results, requests_granted - warmup_grants


def check(results: list[Result], requests_granted: int) -> list[str]:
    """What a working bench shows; a list of what failed (empty when it works)."""
    rows = {r.name: r for r in results}
    problems = [f"{r.name}: no operations" for r in results if r.operations == 0]
    for name in ("reserve (grant)", "reserve+settle"):
        if rows[name].grant_share != 1.0:
            problems.append(f"{name}: {rows[name].grants} grants of {rows[name].operations} operations")
    if rows["reserve (refusal)"].grants:
        problems.append(f"reserve (refusal): {rows['reserve (refusal)'].grants} operations were granted")
    # Every grant wrote every window and then its marker: there is one marker per measured grant.
    measured = rows["reserve (grant)"].grants + rows["reserve+settle"].grants
    if requests_granted != measured:
        problems.append(f"{requests_granted} reservation markers; {measured} granted")
    return problems


def render(results: list[Result], windows: int) -> str:
    base = results[0]
    lines = [
        f"arm {PROVIDER}/{MODEL}: {windows} windows checked (and, for a grant, written) per reservation",
        f"{'operation':<18} {'ops/s':>10} {'vs INCR':>8} {'grants':>7} {'p50 us':>8} {'p99 us':>8}"
        f" {'p99 vs INCR':>11}",
    ]
    for r in results:
        share = "-" if r.grant_share is None else f"{r.grant_share:.0%}"
        lines.append(
            f"{r.name:<18} {r.per_second:>10,.0f} {r.per_second / base.per_second:>8.2f} {share:>7} "
            f"{r.p50_us:>8.0f} {r.p99_us:>8.0f} {r.p99_us / base.p99_us:>11.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per operation (default 5)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent asyncio clients (default 16)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds, tiny sizes; exit 1 unless the bench works"
    )
    args = parser.parse_args(argv)
    duration, clients, warmup = (0.3, 2, 0.1) if args.smoke else (args.duration, args.clients, 0.5)
    # The smoke run still makes more operations per simulated minute than the policy allows
    # (ops are 1 ms apart), so grant rows that fell back to the policy's caps would show refusals.
    at_least = minute_request_cap(load_quota_policy().limits(PROVIDER, MODEL)) + 50 if args.smoke else 0
    with tempfile.TemporaryDirectory() as scratch:
        server = RedisServer(port=0, data_dir=Path(scratch), persist=False).start()
        try:
            results, requests_granted = asyncio.run(measure(server.url, clients, duration, warmup, at_least))
        finally:
            server.stop()
    windows = len(load_quota_policy().limits(PROVIDER, MODEL))
    if args.json:
        rows = [asdict(r) | {"grant_share": r.grant_share} for r in results]
        print(json.dumps(rows, indent=2))
    else:
        print(render(results, windows))
    problems = check(results, requests_granted)
    for problem in problems:
        say(f"BROKEN: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
