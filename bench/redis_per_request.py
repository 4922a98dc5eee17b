"""Redis commands, bytes and stream events per proxied request, and the proxy's CPU per request, on one
Redis server and on a Redis Cluster: the figures the sizing model in docs/deploy.md scales to 10,000
requests a second.

The simulator and one Symphony proxy (``bench/proxy_overhead.py``'s stack, quota caps out of reach) on a
fresh Redis server, then on a fresh local cluster of 3 masters with a replica each
(``symphony.redis_cluster``); ``--requests`` non-streaming requests, 8 at a time, pinned
(``openai/gpt-4o-mini``) and then routed (``auto``). Per target it reads every master's ``INFO
commandstats`` and ``INFO stats`` (bytes in and out), every node's ``INFO cpu``, the stream's length and the
proxy's CPU (its process, from /proc) before and after, and prints per request: commands by name (a
script's inner commands included), all commands, bytes in and out of the masters, events appended, Redis
CPU (masters; replicas apart), the scripts' time, and the proxy's CPU. No engine runs, so every command is
the proxy's (and its background tasks': the challenger poll, the key cache).

    .venv/bin/python bench/redis_per_request.py --requests 1000
    .venv/bin/python bench/redis_per_request.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import proxy_overhead as po

from symphony.redis_client import sync_redis
from symphony.redis_cluster import LocalCluster
from symphony.redis_server import free_port

MAX_TOKENS = 5


@dataclass(frozen=True)
class Snapshot:
    calls: dict[str, int]  # per command on the masters, scripts' inner commands included
    usec: dict[str, int]  # time the masters spent in each command
    bytes_in: int  # into the masters
    bytes_out: int
    masters_cpu_s: float  # user + system CPU of the masters
    replicas_cpu_s: float
    entries: int  # stream entries
    proxy_cpu_s: float


@dataclass(frozen=True)
class Nodes:
    """Where to read the figures: the URL the proxy is given, the masters' and the replicas' URLs."""

    url: str
    masters: list[str]
    replicas: list[str]


def snapshot(nodes: Nodes, proxy_pid: int) -> Snapshot:
    calls: dict[str, int] = {}
    usec: dict[str, int] = {}
    bytes_in = bytes_out = 0
    masters_cpu = replicas_cpu = 0.0
    for url in nodes.masters + nodes.replicas:
        client = sync_redis(url)
        try:
            cpu = client.info("cpu")
            used = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
            if url in nodes.replicas:
                replicas_cpu += used
                continue
            masters_cpu += used
            for name, value in client.info("commandstats").items():
                command = name.removeprefix("cmdstat_")
                calls[command] = calls.get(command, 0) + int(value["calls"])
                usec[command] = usec.get(command, 0) + int(value["usec"])
            net = client.info("stats")
            bytes_in += int(net["total_net_input_bytes"])
            bytes_out += int(net["total_net_output_bytes"])
        finally:
            client.close()
    stream = sync_redis(nodes.url)
    try:
        entries = sum(int(stream.xlen(f"symphony:events:{shard}")) for shard in range(4))
    finally:
        stream.close()
    proxy_cpu = po.cpu_seconds(proxy_pid)
    return Snapshot(calls, usec, bytes_in, bytes_out, masters_cpu, replicas_cpu, entries, proxy_cpu)


def measure(nodes: Nodes, proxy_pid: int, target: po.Target, requests: int) -> dict[str, Any]:
    body = {"model": target.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": MAX_TOKENS}

    def send(_: int) -> int:
        return httpx.post(target.url, json=body, headers=target.headers, timeout=30).status_code

    for _ in range(5):  # warm: scripts loaded, key cached
        send(0)
    before = snapshot(nodes, proxy_pid)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(requests)))
    after = snapshot(nodes, proxy_pid)
    if statuses.count(200) != requests:
        raise RuntimeError(f"{target.name}: {requests - statuses.count(200)} requests failed")
    per = {name: (after.calls[name] - before.calls.get(name, 0)) / requests for name in after.calls}
    per = {name: round(v, 3) for name, v in sorted(per.items(), key=lambda kv: -kv[1]) if v > 0}
    per.pop("info", None)
    per.pop("xlen", None)  # the bench's own reads
    return {
        "redis": "cluster" if nodes.replicas else "server",
        "target": target.name,
        "requests": requests,
        "commands_per_request": round(sum(per.values()), 2),
        "by_command": per,
        "bytes_in_per_request": round((after.bytes_in - before.bytes_in) / requests),
        "bytes_out_per_request": round((after.bytes_out - before.bytes_out) / requests),
        "events_per_request": round((after.entries - before.entries) / requests, 3),
        "redis_cpu_ms_per_request": round((after.masters_cpu_s - before.masters_cpu_s) * 1000 / requests, 4),
        "replicas_cpu_ms_per_request": round(
            (after.replicas_cpu_s - before.replicas_cpu_s) * 1000 / requests, 4
        ),
        "proxy_cpu_ms_per_request": round((after.proxy_cpu_s - before.proxy_cpu_s) * 1000 / requests, 3),
        "scripts_us_per_request": round(
            (after.usec["evalsha"] - before.usec.get("evalsha", 0)) / requests, 1
        ),
    }


def run_proxy(stack: po.Stack, nodes: Nodes, requests: int) -> list[dict[str, Any]]:
    """One proxy on ``nodes.url``: its pinned target, then its routed one."""
    service, targets = po.symphony_service(stack, free_port())
    service.start(60)
    try:
        return [measure(nodes, service.pid, target, requests) for target in targets]
    finally:
        service.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per target")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.requests < 10:
        parser.error("--requests must be at least 10")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="redis-per-request-") as tmp:
        with po.running_stack(Path(tmp) / "server", 60) as (stack, _):
            results += run_proxy(stack, Nodes(stack.redis_url, [stack.redis_url], []), args.requests)
        cluster = LocalCluster(Path(tmp) / "cluster").start()
        try:
            with po.running_stack(Path(tmp) / "cluster-stack", 60) as (stack, _):
                urls = [f"redis://127.0.0.1:{node.port}/0" for node in cluster.nodes]
                nodes = Nodes(cluster.url, urls[: cluster.masters], urls[cluster.masters :])
                results += run_proxy(replace(stack, redis_url=cluster.url), nodes, args.requests)
        finally:
            cluster.stop()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for row in results:
            print(
                f"{row['redis']} {row['target']}: proxy CPU {row['proxy_cpu_ms_per_request']} ms, "
                f"{row['commands_per_request']} commands, "
                f"{row['bytes_in_per_request']} B in, {row['bytes_out_per_request']} B out, "
                f"{row['events_per_request']} events, Redis CPU {row['redis_cpu_ms_per_request']} ms "
                f"(replicas {row['replicas_cpu_ms_per_request']} ms) "
                f"(scripts {row['scripts_us_per_request']} µs) per request; "
                f"{row['by_command']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
