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

The machine's speed drifts from second to second (other tenants of this VM), so the rows that
compare with ``INCR`` are measured in ``--repeats`` rounds, each row once a round, the order
reversed every other round; a row's ratio is the median of its ratios to the ``INCR`` of the
same round, with their range. The refusal row comes once, after the rounds: the model's minute
is used up in the simulated future, and a grant written behind it would slow the grant rows.
The clients run on uvloop, as the proxy does (``--loop asyncio`` for the standard loop).

    .venv/bin/python bench/quota_reserve.py                  # 3 rounds of 5 s a row, 16 clients
    .venv/bin/python bench/quota_reserve.py --duration 10 --clients 32 --repeats 5 --json
    .venv/bin/python bench/quota_reserve.py --smoke          # a few seconds; exits 1 if the bench broke
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import redis.asyncio as aioredis
import uvloop
from spread import Spread

from proxy.resources import proxy_redis
from symphony import clock
from symphony.quotas import DAY_MS, AsyncQuotaStore, Limit, Reservation, load_quota_policy
from symphony.quotas.store import MARKER_TTL_MS
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


def unreachable(limits: Sequence[Limit]) -> tuple[Limit, ...]:
    """The same windows and keys, with caps the bench cannot reach: one tuple, kept, as the proxy's
    quota gate keeps one per arm (``store.layout_of`` finds its layout by the tuple's identity)."""
    return tuple(dataclasses.replace(limit, cap=UNREACHABLE) for limit in limits)


async def _markers(client: aioredis.Redis) -> int:
    """The reservations made so far: a grant writes its marker once every window is written."""
    return sum([1 async for _ in client.scan_iter(f"symphony:reservation:{{{PROVIDER}}}:*", count=1000)])


def minute_request_cap(limits: Sequence[Limit]) -> int:
    """The arm's tightest requests-per-minute cap in the policy."""
    return min(limit.cap for limit in limits if limit.metric == "requests" and limit.window.name == "minute")


class Row(NamedTuple):
    """An operation over its rounds: each round's result and its ratio to that round's ``INCR``."""

    name: str
    rounds: list[Result]
    ratios: list[float]

    @property
    def operations(self) -> int:
        return sum(r.operations for r in self.rounds)

    @property
    def grants(self) -> int:
        return sum(r.grants for r in self.rounds)

    @property
    def grant_share(self) -> float | None:
        return None if self.name.startswith("INCR") else self.grants / max(self.operations, 1)

    @property
    def per_second(self) -> Spread:
        return Spread.of([r.per_second for r in self.rounds])

    @property
    def vs_incr(self) -> Spread:
        return Spread.of(self.ratios)

    def percentile_us(self, which: str) -> float:
        """The median over the rounds of ``p50_us`` or ``p99_us``."""
        return statistics.median(float(getattr(r, which)) for r in self.rounds)


BASELINE = "INCR (baseline)"


async def measure(
    url: str, clients: int, seconds: float, repeats: int, warmup: float = 0.5, at_least: int = 0
) -> tuple[list[Row], int]:
    """The rows, and the requests the model's minute buckets hold from the measured grant rows.

    Each row runs ``seconds`` and at least ``at_least`` operations a round (module docstring).
    """
    client = proxy_redis(url)  # the proxy's client: one multiplexed connection
    pooled = async_redis(url, max_connections=clients)  # redis-py's own pooled client, for comparison
    store = AsyncQuotaStore(client)
    policy_limits = load_quota_policy().limits(PROVIDER, MODEL)
    open_limits = unreachable(policy_limits)
    now = clock.wall_ms()
    # Where each run's operation numbers start: far past any number the run before reached (a run of
    # 10**9 operations would take ~11.6 simulated days), so every grant has its own millisecond.
    firsts = itertools.count(step=10**9)

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

    async def timed(name: str, operation: Operation, label: str) -> tuple[Result, int]:
        """``operation`` warmed up (connections, script cache), then measured; and the warm-up's grants."""
        say(f"{label}{name}: {clients} clients for {seconds:g}s")
        _, warm, _ = await _drive(operation, clients, warmup, next(firsts))
        latencies, grants, took = await _drive(operation, clients, seconds, next(firsts), at_least)
        return _summarise(name, latencies, grants, took), warm

    compared: tuple[tuple[str, Operation], ...] = (
        (BASELINE, incr),
        ("reserve (grant)", reserve),
        ("reserve+settle", reserve_and_settle),
        ("INCR (redis-py pool)", pooled_incr),
    )
    results: dict[str, list[Result]] = {name: [] for name, _ in compared}
    warmup_grants = 0
    for round_ in range(repeats):
        for name, operation in compared if round_ % 2 == 0 else compared[::-1]:
            result, warm = await timed(name, operation, f"round {round_ + 1}/{repeats}: ")
            results[name].append(result)
            warmup_grants += warm
    requests_granted = await _markers(client) - warmup_grants

    refused_at = now + next(firsts) + 365 * DAY_MS  # past every window the grant rows wrote (~70 days)

    async def refused(n: int) -> bool:
        outcome = await store.reserve(
            policy_limits, refused_at, provider=PROVIDER, model=MODEL, tokens=TOKENS
        )
        return isinstance(outcome, Reservation)

    while await refused(0):  # use up the model's requests in that minute, then measure refusals
        pass
    refusal, _ = await timed("reserve (refusal)", refused, "")
    await client.aclose()
    await pooled.aclose()

    baseline = results[BASELINE]
    rows = [
        Row(name, rounds, [r.per_second / b.per_second for r, b in zip(rounds, baseline, strict=True)])
        for name, rounds in results.items()
    ]
    incr_median = statistics.median(b.per_second for b in baseline)
    rows.insert(3, Row(refusal.name, [refusal], [refusal.per_second / incr_median]))
    return rows, requests_granted


def check(rows: list[Row], requests_granted: int) -> list[str]:
    """What a working bench shows; a list of what failed (empty when it works)."""
    by_name = {row.name: row for row in rows}
    problems = [f"{r.name}: no operations" for row in rows for r in row.rounds if r.operations == 0]
    for name in ("reserve (grant)", "reserve+settle"):
        if by_name[name].grant_share != 1.0:
            problems.append(f"{name}: {by_name[name].grants} grants of {by_name[name].operations} operations")
    if by_name["reserve (refusal)"].grants:
        problems.append(f"reserve (refusal): {by_name['reserve (refusal)'].grants} operations were granted")
    # Every grant wrote every window and then its marker: there is one marker per measured grant.
    measured = by_name["reserve (grant)"].grants + by_name["reserve+settle"].grants
    if requests_granted != measured:
        problems.append(
            f"{requests_granted} reservation markers; {measured} granted"
            f" (a marker lives {MARKER_TTL_MS // 60_000} min: a longer run loses the first ones)"
        )
    return problems


def render(rows: list[Row], windows: int, repeats: int) -> str:
    incr = rows[0]
    lines = [
        f"arm {PROVIDER}/{MODEL}: {windows} windows checked (and, for a grant, written) per reservation",
        f"medians of {repeats} rounds; vs INCR: the median of each round's ratio, [min .. max]",
        f"{'operation':<20} {'ops/s':>9} {'vs INCR':>7} {'[min .. max]':>14} {'grants':>7} {'p50 us':>7}"
        f" {'p99 us':>7} {'p99 vs INCR':>11}",
    ]
    for row in rows:
        share = "-" if row.grant_share is None else f"{row.grant_share:.0%}"
        ratio = row.vs_incr
        p99 = row.percentile_us("p99_us")
        lines.append(
            f"{row.name:<20} {row.per_second.median:>9,.0f} {ratio.median:>7.2f}"
            f" {f'[{ratio.low:.2f} .. {ratio.high:.2f}]':>14} {share:>7} {row.percentile_us('p50_us'):>7.0f}"
            f" {p99:>7.0f} {p99 / incr.percentile_us('p99_us'):>11.2f}"
        )
    return "\n".join(lines)


def as_json(row: Row) -> dict[str, object]:
    return {
        "name": row.name,
        "operations": row.operations,
        "grants": row.grants,
        "grant_share": row.grant_share,
        "per_second": asdict(row.per_second),
        "vs_incr": asdict(row.vs_incr),
        "p50_us": row.percentile_us("p50_us"),
        "p99_us": row.percentile_us("p99_us"),
        "rounds": [asdict(r) for r in row.rounds],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per row a round (default 5)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent asyncio clients (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the compared rows (default 3)")
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the event loop (default uvloop)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds, tiny sizes; exit 1 unless the bench works"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.clients < 1 or args.duration <= 0:
        parser.error("--repeats and --clients must be at least 1, --duration above 0")
    duration, clients, warmup = (0.3, 2, 0.1) if args.smoke else (args.duration, args.clients, 0.5)
    repeats = 2 if args.smoke else args.repeats  # two: the smoke run reverses the order once too
    # The smoke run still makes more operations per simulated minute than the policy allows
    # (ops are 1 ms apart), so grant rows that fell back to the policy's caps would show refusals.
    at_least = minute_request_cap(load_quota_policy().limits(PROVIDER, MODEL)) + 50 if args.smoke else 0
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    with tempfile.TemporaryDirectory() as scratch:
        server = RedisServer(port=0, data_dir=Path(scratch), persist=False).start()
        try:
            rows, requests_granted = run(measure(server.url, clients, duration, repeats, warmup, at_least))
        finally:
            server.stop()
    windows = len(load_quota_policy().limits(PROVIDER, MODEL))
    if args.json:
        print(
            json.dumps({"loop": args.loop, "clients": clients, "rows": [as_json(r) for r in rows]}, indent=2)
        )
    else:
        print(render(rows, windows, repeats))
    problems = check(rows, requests_granted)
    for problem in problems:
        say(f"BROKEN: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
