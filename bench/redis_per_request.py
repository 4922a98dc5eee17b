"""Redis commands, bytes and stream events per proxied request: the figures the sizing model in
docs/deploy.md scales to 10,000 requests a second.

One fresh Redis, the simulator and one Symphony proxy (``bench/proxy_overhead.py``'s stack, quota caps
out of reach); ``--requests`` non-streaming requests, 8 at a time, pinned (``openai/gpt-4o-mini``) and then
routed (``auto``). Per target it reads Redis's ``INFO commandstats`` and ``INFO stats`` (bytes in and out
of the server) before and after, and the stream's length, and prints per request: commands by name,
all commands, bytes in, bytes out, and events appended. No engine runs, so every command is the proxy's
(and the few of its background tasks: the challenger poll, the key cache).

    .venv/bin/python bench/redis_per_request.py --requests 1000
    .venv/bin/python bench/redis_per_request.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import proxy_overhead as po

from symphony.redis_client import sync_redis
from symphony.redis_server import free_port

MAX_TOKENS = 5


@dataclass(frozen=True)
class Snapshot:
    calls: dict[str, int]  # per command, scripts' inner commands included
    usec: dict[str, int]  # time Redis spent in each command
    bytes_in: int
    bytes_out: int
    cpu_s: float  # the server's user + system CPU
    entries: int  # stream entries


def snapshot(redis_url: str) -> Snapshot:
    client = sync_redis(redis_url)
    try:
        stats = client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        usec = {name.removeprefix("cmdstat_"): int(v["usec"]) for name, v in stats.items()}
        net, cpu = client.info("stats"), client.info("cpu")
        entries = sum(int(client.xlen(f"symphony:events:{shard}")) for shard in range(4))
        return Snapshot(
            calls,
            usec,
            int(net["total_net_input_bytes"]),
            int(net["total_net_output_bytes"]),
            float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            entries,
        )
    finally:
        client.close()


def measure(redis_url: str, target: po.Target, requests: int) -> dict[str, Any]:
    body = {"model": target.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": MAX_TOKENS}

    def send(_: int) -> int:
        return httpx.post(target.url, json=body, headers=target.headers, timeout=30).status_code

    for _ in range(5):  # warm: scripts loaded, key cached
        send(0)
    before = snapshot(redis_url)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(requests)))
    after = snapshot(redis_url)
    if statuses.count(200) != requests:
        raise RuntimeError(f"{target.name}: {requests - statuses.count(200)} requests failed")
    per = {name: (after.calls[name] - before.calls.get(name, 0)) / requests for name in after.calls}
    per = {name: round(v, 3) for name, v in sorted(per.items(), key=lambda kv: -kv[1]) if v > 0}
    per.pop("info", None)
    per.pop("xlen", None)  # the bench's own reads
    return {
        "target": target.name,
        "requests": requests,
        "commands_per_request": round(sum(per.values()), 2),
        "by_command": per,
        "bytes_in_per_request": round((after.bytes_in - before.bytes_in) / requests),
        "bytes_out_per_request": round((after.bytes_out - before.bytes_out) / requests),
        "events_per_request": round((after.entries - before.entries) / requests, 3),
        "redis_cpu_ms_per_request": round((after.cpu_s - before.cpu_s) * 1000 / requests, 4),
        "scripts_us_per_request": round(
            (after.usec["evalsha"] - before.usec.get("evalsha", 0)) / requests, 1
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per target")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.requests < 10:
        parser.error("--requests must be at least 10")
    with (
        tempfile.TemporaryDirectory(prefix="redis-per-request-") as tmp,
        po.running_stack(Path(tmp), 60) as (
            stack,
            _,
        ),
    ):
        service, targets = po.symphony_service(stack, free_port())
        service.start(60)
        try:
            results = [measure(stack.redis_url, target, args.requests) for target in targets]
        finally:
            service.stop()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for row in results:
            print(
                f"{row['target']}: {row['commands_per_request']} commands, "
                f"{row['bytes_in_per_request']} B in, {row['bytes_out_per_request']} B out, "
                f"{row['events_per_request']} events, Redis CPU {row['redis_cpu_ms_per_request']} ms "
                f"(scripts {row['scripts_us_per_request']} µs) per request; "
                f"{row['by_command']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
