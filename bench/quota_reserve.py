"""Reservations per second and latency of the quota reserve script, beside a plain INCR.

Both run in the same process against the same bundled Redis server, with the same
number of concurrent asyncio clients: first the baseline (one ``INCR`` per
operation, the cheapest atomic counter Redis has), then Symphony's reservation (one
``EVALSHA`` checking and writing every window of an arm: provider and model caps
over minute, day and week, plus a subscription window), then reservation plus
settlement (what a request really costs the proxy). The figures of interest are
the ratios to the baseline.

    .venv/bin/python bench/quota_reserve.py                  # 5 s each, 16 clients
    .venv/bin/python bench/quota_reserve.py --duration 10 --clients 32 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import redis.asyncio as aioredis

from symphony import clock
from symphony.quota_store import AsyncQuotaStore, Reservation
from symphony.quotas import load_quota_policy
from symphony.redis_server import RedisServer, free_port

PROVIDER, MODEL = "openai", "gpt-4o"  # the arm with the most windows in the policy


@dataclass(frozen=True)
class Result:
    name: str
    operations: int
    per_second: float
    p50_us: float
    p99_us: float


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def _drive(operation: Callable[[int], Awaitable[None]], clients: int, seconds: float) -> list[float]:
    """Run ``operation`` from ``clients`` coroutines for ``seconds``; latencies in seconds."""
    latencies: list[float] = []
    deadline = clock.monotonic() + seconds

    async def client(index: int) -> None:
        n = index
        while clock.monotonic() < deadline:
            started = clock.monotonic()
            await operation(n)
            latencies.append(clock.monotonic() - started)
            n += clients

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies


def _summarise(name: str, latencies: list[float], seconds: float) -> Result:
    cuts = statistics.quantiles(latencies, n=100)
    return Result(name, len(latencies), len(latencies) / seconds, cuts[49] * 1e6, cuts[98] * 1e6)


async def measure(url: str, clients: int, seconds: float) -> list[Result]:
    client = aioredis.Redis.from_url(url, max_connections=clients)
    store = AsyncQuotaStore(client)
    limits = load_quota_policy().limits(PROVIDER, MODEL)
    now = clock.wall_ms()

    async def incr(n: int) -> None:
        await client.incr("bench:baseline")

    async def reserve(n: int) -> None:
        await store.reserve(limits, now + n, provider=PROVIDER, model=MODEL, tokens=1)

    async def reserve_and_settle(n: int) -> None:
        outcome = await store.reserve(limits, now + n, provider=PROVIDER, model=MODEL, tokens=1)
        if isinstance(outcome, Reservation):
            await store.settle(outcome, 2)

    results = []
    for name, operation in (
        ("INCR (baseline)", incr),
        ("reserve", reserve),
        ("reserve+settle", reserve_and_settle),
    ):
        say(f"{name}: {clients} clients for {seconds:g}s")
        await _drive(operation, clients, 0.5)  # warm-up: connections, script cache
        results.append(_summarise(name, await _drive(operation, clients, seconds), seconds))
    await client.aclose()
    return results


def render(results: list[Result], windows: int) -> str:
    base = results[0]
    lines = [
        f"arm {PROVIDER}/{MODEL}: {windows} windows checked and written per reservation",
        f"{'operation':<16} {'ops/s':>10} {'vs INCR':>8} {'p50 us':>8} {'p99 us':>8} {'p99 vs INCR':>11}",
    ]
    for r in results:
        lines.append(
            f"{r.name:<16} {r.per_second:>10,.0f} {r.per_second / base.per_second:>8.2f} "
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
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        server = RedisServer(port=free_port(), data_dir=Path(scratch), persist=False).start()
        try:
            results = asyncio.run(measure(server.url, args.clients, args.duration))
        finally:
            server.stop()
    windows = len(load_quota_policy().limits(PROVIDER, MODEL))
    print(json.dumps([asdict(r) for r in results], indent=2) if args.json else render(results, windows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
