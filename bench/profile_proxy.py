"""Profile the proxy under load: py-spy samples one proxy process while k6 drives it at a rate.

One run starts a Redis server, the simulator and one Symphony proxy (pinned target, as
``bench/proxy_overhead.py`` sets them up; ``--traced`` exports spans to a discarding OTLP
receiver), warms it up, then records ``--duration`` seconds of samples at ``--rate`` req/s and
prints the own time per package (the project's folders, each installed library), then the functions
with the most samples, by own time and by time including callees. The
raw profile (speedscope JSON, open it at speedscope.app or in any viewer) is kept in
``--out``. It reports no ratio: it is the tool that says where a benchmark's microseconds go.

    .venv/bin/python bench/profile_proxy.py --rate 500 --duration 20
    .venv/bin/python bench/profile_proxy.py --traced --top 40
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

import proxy_overhead as po
import tracing_overhead as to

from symphony.redis_client import sync_redis

ROOT = Path(__file__).resolve().parent.parent


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def record(pid: int, duration_s: float, out: Path) -> None:
    """py-spy's samples of ``pid`` for ``duration_s`` (idle frames left out), as speedscope JSON."""
    args = [py_spy(), "record", "--pid", str(pid), "--duration", f"{duration_s:g}", "--rate", "250"]
    args += ["--format", "speedscope", "--output", str(out), "--nonblocking"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def package_of(file: str) -> str:
    """The package a frame's code belongs to: the project's top-level folder, an installed
    distribution's top-level module, or the standard library's module."""
    path = Path(file)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    if ROOT in path.parents:
        return path.relative_to(ROOT).parts[0].removesuffix(".py")
    for index, part in enumerate(parts):
        if re.fullmatch(r"python3\.\d+", part) and index + 1 < len(parts):
            return f"stdlib:{parts[index + 1].removesuffix('.py')}"
    return path.name


class Tallies(NamedTuple):
    own: collections.Counter[str]  # samples per frame where it is on top
    total: collections.Counter[str]  # samples per frame anywhere on the stack
    packages: collections.Counter[str]  # own samples per package (``package_of``)
    count: int  # all samples


def tallies(profile: dict[str, Any]) -> Tallies:
    shared = profile["shared"]["frames"]
    frames = [f"{f['name']} ({Path(str(f['file'])).name}:{f.get('line', '?')})" for f in shared]
    packages = [package_of(str(f["file"])) for f in shared]
    found = Tallies(collections.Counter(), collections.Counter(), collections.Counter(), 0)
    count = 0
    for one in profile["profiles"]:
        for stack, weight in zip(one["samples"], one["weights"], strict=True):
            count += weight
            if stack:
                found.own[frames[stack[-1]]] += weight
                found.packages[packages[stack[-1]]] += weight
            for name in {frames[index] for index in stack}:
                found.total[name] += weight
    return found._replace(count=count)


def print_top(title: str, counter: collections.Counter[str], count: int, top: int) -> None:
    print(f"\n{title} (share of the {count:.1f} s the main thread was sampled busy)")
    for name, weight in counter.most_common(top):
        print(f"  {100 * weight / count:5.1f}%  {name}")


def redis_calls(url: str) -> dict[str, tuple[int, float]]:
    """Per Redis command: calls and microseconds per call so far (``INFO commandstats``)."""
    client = sync_redis(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): (int(s["calls"]), float(s["usec"])) for name, s in stats.items()}


def print_redis(
    before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]], requests: int
) -> None:
    print(f"\nRedis commands per request ({requests} requests) and server time per call")
    for name, (calls, usec) in sorted(after.items(), key=lambda item: -item[1][0]):
        made = calls - before.get(name, (0, 0.0))[0]
        spent = usec - before.get(name, (0, 0.0))[1]
        if made:
            print(f"  {made / requests:6.2f}  {name:<12} {spent / made:7.1f} us")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=500, help="req/s (default 500)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds recorded (default 20)")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of load before recording (default 5)"
    )
    parser.add_argument("--traced", action="store_true", help="tracing on, to a discarding OTLP receiver")
    parser.add_argument("--top", type=int, default=30, help="functions printed per table (default 30)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "profile" / "proxy.speedscope.json")
    parser.add_argument("--var-dir", type=Path, default=ROOT / "var" / "profile")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    var: Path = args.var_dir.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with (
        to.DiscardingReceiver().running() as receiver,
        po.running_stack(var, 120.0) as (stack, _sim),
        ExitStack() as exits,
    ):
        endpoint = receiver.url if args.traced else ""
        target = to.proxy_target(
            stack, "symphony", exits, 120.0, {"TEMPO_ENDPOINT": endpoint, "SPANS_TOKEN": ""}
        )
        assert target.pid is not None
        po.say(f"{args.warmup:g}s warm-up at {args.rate} req/s")
        po.run_k6(target, po.LoadSpec(args.rate, args.warmup, 5.0, 5), var / "logs" / "k6-warmup.log")
        load = po.LoadSpec(args.rate, args.duration + 2, 5.0, 5)
        result: list[po.K6Result] = []
        k6 = threading.Thread(target=lambda: result.append(po.run_k6(target, load, var / "logs" / "k6.log")))
        k6.start()
        po.say(f"recording {args.duration:g}s of the proxy (pid {target.pid}) under load")
        before = redis_calls(stack.redis_url)
        record(target.pid, args.duration, args.out)
        k6.join()
        after = redis_calls(stack.redis_url)
    found = tallies(json.loads(args.out.read_text()))
    print(f"k6: {result[0]}" if result else "k6: no result")
    if result:
        print_redis(before, after, result[0].requests)
    print_top("own time by package", found.packages, found.count, args.top)
    print_top("own time", found.own, found.count, args.top)
    print_top("time including callees", found.total, found.count, args.top)
    print(f"\nprofile: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
