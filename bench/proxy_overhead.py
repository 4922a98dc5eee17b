"""Measure the latency and CPU a gateway adds in front of the provider simulator, beside its peers.

One run starts a Redis server, the simulator and every selected gateway (Symphony's
proxy, the Portkey gateway, the LiteLLM proxy with one worker), each in front of the SAME
simulator, plus the floor: a bare pass-through relay (Starlette on uvicorn + uvloop +
httptools, aiohttp upstream), the least any Python gateway can cost. For every rate k6
(constant-arrival-rate, non-streaming chat completions, small prompt, small max_tokens)
drives every target: straight at the simulator (``direct``, the baseline), the floor,
Symphony with a pinned model (``symphony``), Symphony routing (``symphony-auto``: model
``auto`` over several arms of equal simulated latency, baseline ``direct-auto``), Symphony
pinned on ``PROXY_WORKERS`` (2) processes sharing one port (``symphony-workers``) and the
peers. Each rate is repeated ``--repeats`` times (at least 3 for a full run), the order of
the targets alternating (forward, reversed, forward, ...) so no target always runs first
or last; the report gives the median over the repeats and the spread (min-max).

Overhead is a target's latency percentile minus its baseline's in the same repeat. CPU per
request is utime+stime from /proc of the target's process tree and, for Symphony, of the
Redis server as well: Symphony hands its quota scripts and events to Redis, the peers
use none, so Redis's CPU during Symphony's run is Symphony's cost (shown on its own too).
Beside it: the share of failed or timed-out requests ("not sustained" above
``--max-failed-share``), RSS, and Symphony's events per request.

The simulator's latency is deterministic when ``max_tokens`` is below the model's
shortest answer: openai/gpt-4o-mini with 5 output tokens answers in 30 ms + 5/400 s =
42.5 ms. The routed arms (gemini/gemini-2.5-flash, venice/llama-3.3-70b,
deepseek/deepseek-chat) are brought to one latency (70 ms at 5 tokens) with the
simulator's ``slow_ttft_ms`` fault, so routing cannot change the latency of the answer,
only the gateway's own cost. Peers are installed on first use (cached, pinned versions)
under ``var/bench/``: ``litellm[proxy]`` into its own venv, ``@portkey-ai/gateway`` with npm.

``--smoke``: a few seconds at tiny sizes, Symphony (pinned and routed) and the floor only,
no peers; exits non-zero when any target fails or a figure is missing (run by .ci/run).

    .venv/bin/python bench/proxy_overhead.py                  # 3 x 20 s at 200 and 500 req/s
    .venv/bin/python bench/proxy_overhead.py --duration 10 --only symphony,portkey --json
    .venv/bin/python bench/proxy_overhead.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from spread import Spread

from cli.perf_run import k6_binary
from simulator.latency import latency_for
from symphony import clock
from symphony.app_keys import AppKey, create_key
from symphony.catalog import load_catalog
from symphony.quotas import QUOTAS_FILE
from symphony.redis_client import sync_redis
from symphony.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
K6_SCRIPT = Path(__file__).resolve().parent / "k6" / "chat_overhead.js"
GATEWAYS = ("symphony", "symphony-workers", "symphony-baseline", "portkey", "litellm")
BASELINE = "symphony-baseline"  # Symphony as of another commit (--baseline): not run by default
# What each gateway is measured as (symphony-workers: the pinned target on PROXY_WORKERS processes).
TARGETS_OF = {
    "floor": ("floor",),
    "symphony": ("symphony", "symphony-auto"),
    "symphony-workers": ("symphony-workers",),
    BASELINE: (BASELINE,),
    "portkey": ("portkey",),
    "litellm": ("litellm",),
}
# Every target, in the forward order of a repeat: baselines first, then the gateways.
TARGETS = ("direct", "direct-auto", *(target for targets in TARGETS_OF.values() for target in targets))
PROXY_WORKERS = 2  # symphony-workers' processes on one port: this machine's cores
PROVIDER = "openai"
MODEL = "gpt-4o-mini"
# Routing: arms of one simulated latency once padded (ms at 5 output tokens; see pad_auto_arms).
AUTO_ARMS = (("gemini", "gemini-2.5-flash"), ("venice", "llama-3.3-70b"), ("deepseek", "deepseek-chat"))
AUTO_LATENCY_MS = 70
AUTO_DIRECT = ("venice", "llama-3.3-70b")  # the arm direct-auto calls: 70 ms with no padding
LITELLM_SPEC = "litellm[proxy]==1.108.7"
PORTKEY_SPEC = "@portkey-ai/gateway@1.15.2"
LITELLM_WORKERS = 1
DUMMY_KEY = "sk-bench-dummy"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def say(message: str) -> None:
    """A progress line on stderr (stdout carries the table or the JSON)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM if the benchmark dies."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Service:
    """A process the benchmark started, with its log and the URL that says it is up."""

    name: str
    args: list[str]
    health_url: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def start(self, timeout: float) -> Service:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = clock.monotonic() + timeout
        while not _answers(self.health_url):
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            if clock.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} did not answer {self.health_url} in {timeout:.0f}s; see {self.log}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def _process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the parent ids in /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_ticks(stat: Path) -> int:
    """utime + stime from a ``/proc/<pid>/stat`` or ``/proc/<pid>/task/<tid>/stat`` file, in clock ticks."""
    fields = stat.read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and its descendants, in seconds."""
    ticks = 0
    for pid in _process_tree(root):
        with suppress(OSError, IndexError, ValueError):
            ticks += cpu_ticks(Path(f"/proc/{pid}/stat"))
    return ticks / CLK_TCK


def rss_mib(root: int) -> float:
    """Resident memory of ``root`` and its descendants, in MiB."""
    kib = 0
    for pid in _process_tree(root):
        with suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
    return kib / 1024


def settle(pids: Sequence[int], idle_share: float = 0.05, limit_s: float = 15.0) -> None:
    """Wait until the processes use under ``idle_share`` of a core (a backlog has drained)."""
    deadline = clock.monotonic() + limit_s
    while clock.monotonic() < deadline:
        before, start = sum(cpu_seconds(pid) for pid in pids), clock.monotonic()
        time.sleep(0.5)
        used = sum(cpu_seconds(pid) for pid in pids) - before
        if used / (clock.monotonic() - start) < idle_share:
            return


# --------------------------------------------------------------------------- gateways


@dataclass(frozen=True)
class Target:
    """Where k6 sends its requests: the simulator itself or a gateway in front of it."""

    name: str
    url: str
    model: str
    headers: dict[str, str]
    pid: int | None = None
    baseline: str = "direct"  # the target whose latency is subtracted
    redis_pid: int | None = None  # the Redis server whose CPU counts as this target's (Symphony)


@dataclass(frozen=True)
class Stack:
    """Shared parts every gateway uses: paths, the Redis URL and the simulator's URL."""

    var: Path
    redis_url: str
    sim_url: str
    redis_pid: int
    baseline_checkout: Path | None = None  # the code symphony-baseline runs (--baseline)

    @property
    def sim_openai_base(self) -> str:
        return f"{self.sim_url}/{PROVIDER}/v1"


def _run(args: Sequence[str], what: str, log: Path) -> None:
    say(f"{what} (log {log})")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        code = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        raise RuntimeError(f"{what} failed with exit code {code}; see {log}")


def _cached(marker: Path, spec: str, install: Callable[[], None]) -> None:
    """Run ``install`` unless ``marker`` says ``spec`` is already installed."""
    if marker.exists() and marker.read_text() == spec:
        return
    install()
    marker.write_text(spec)


def install_portkey(var: Path, spec: str) -> str:
    home = var / "portkey"
    home.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm") or "npm"
    args = [npm, "install", "--prefix", str(home), "--no-audit", "--no-fund", "--no-save", spec]
    _cached(
        home / ".installed",
        spec,
        lambda: _run(args, f"installing {spec} with npm", var / "logs/install-portkey.log"),
    )
    package = json.loads((_portkey_package(var) / "package.json").read_text())
    return str(package["version"])


def _portkey_package(var: Path) -> Path:
    return var / "portkey" / "node_modules" / "@portkey-ai" / "gateway"


def install_litellm(var: Path, spec: str) -> str:
    home = var / "litellm"
    log = var / "logs" / "install-litellm.log"

    def install() -> None:
        _run([sys.executable, "-m", "venv", str(home)], "creating the LiteLLM venv", log)
        _run([str(home / "bin" / "pip"), "install", "-q", spec], f"installing {spec} (large, once)", log)

    _cached(home / ".installed", spec, install)
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    return subprocess.run(
        [str(home / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()


def symphony_app_key(redis_url: str, models: tuple[str, ...] = ()) -> str:
    """An app key issued in the benchmark's own Redis: no limits; ``models``, its allow-list (empty: any)."""
    client = sync_redis(redis_url)
    try:
        record = AppKey(prefix="", app="bench", created_ms=clock.wall_ms(), models=models)
        key, _ = create_key(client, record)
    finally:
        client.close()
    return key


def roomy_quota_policy(var: Path) -> Path:
    """The shipped quota policy with every cap a million times larger.

    The peers enforce no quotas, so neither may Symphony refuse here; it still reserves and
    settles every request in Redis, so the measured overhead includes the quota scripts.
    """
    policy = json.loads(QUOTAS_FILE.read_text())
    for quota in policy["providers"].values():
        for caps in [quota.get("caps", {}), *quota.get("models", {}).values()]:
            for windows in caps.values():
                for window in windows:
                    windows[window] *= 1_000_000
        for metric in ("requests", "tokens"):
            if metric in quota.get("subscription", {}):
                quota["subscription"][metric] *= 1_000_000
    path = var / "quotas.bench.json"
    path.write_text(json.dumps(policy))
    return path


def pad_auto_arms(sim_url: str, max_tokens: int) -> dict[str, int]:
    """Bring every routed arm to ``AUTO_LATENCY_MS`` with the simulator's ``slow_ttft_ms`` fault.

    The padding is added to the provider's every answer; it must be whole milliseconds, which
    holds for these arms at 5 output tokens (35 + 35, 50 + 20, 50 + 20 ms).
    """
    pads: dict[str, int] = {}
    for provider, model in AUTO_ARMS:
        natural_ms = latency_for(provider, model).total_s(max_tokens) * 1000
        pad = AUTO_LATENCY_MS - natural_ms
        if pad < 0 or abs(pad - round(pad)) > 1e-6:
            raise RuntimeError(
                f"{provider}/{model} answers in {natural_ms:.2f} ms at max_tokens {max_tokens}: "
                f"it cannot be padded to {AUTO_LATENCY_MS} ms; keep max_tokens at 5"
            )
        pads[provider] = round(pad)
        if pads[provider]:
            response = httpx.put(f"{sim_url}/admin/faults/{provider}", json={"slow_ttft_ms": pads[provider]})
            response.raise_for_status()
    return pads


def symphony_service(stack: Stack, port: int) -> tuple[Service, list[Target]]:
    env = {
        "PROXY_PORT": str(port),
        "SIM_URL": stack.sim_url,
        "REDIS_URL": stack.redis_url,
        "VAR_DIR": str(stack.var / "symphony"),
        "SIMULATED_PROVIDERS": "all",
        "QUOTA_POLICY_FILE": str(roomy_quota_policy(stack.var)),
    }
    service = Service(
        "symphony",
        [sys.executable, "-m", "cli", "proxy"],
        f"http://127.0.0.1:{port}/health",
        stack.var / "logs" / "symphony.log",
        env,
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    pinned_key = symphony_app_key(stack.redis_url)
    auto_key = symphony_app_key(stack.redis_url, tuple(f"{p}/{m}" for p, m in AUTO_ARMS))
    return service, [
        Target("symphony", url, f"{PROVIDER}/{MODEL}", {"Authorization": f"Bearer {pinned_key}"}),
        Target("symphony-auto", url, "auto", {"Authorization": f"Bearer {auto_key}"}, baseline="direct-auto"),
    ]


def pinned_symphony(stack: Stack, port: int, name: str, env: dict[str, str]) -> tuple[Service, Target]:
    """Symphony's proxy as ``name``, with ``env`` over its own settings: its pinned target only."""
    service, targets = symphony_service(stack, port)
    service.name, service.env = name, {**service.env, **env}
    service.log = stack.var / "logs" / f"{name}.log"
    return service, replace(targets[0], name=name)


def symphony_workers_service(stack: Stack, port: int) -> tuple[Service, list[Target]]:
    """Symphony's proxy as PROXY_WORKERS processes sharing one port (pinned target only)."""
    env = {
        "PROXY_WORKERS": str(PROXY_WORKERS),
        "VAR_DIR": str(stack.var / "symphony-workers"),
        "DECISION_KEY": secrets.token_hex(16),  # one for every worker, as `symphony up` gives them
    }
    service, target = pinned_symphony(stack, port, "symphony-workers", env)
    return service, [target]


def baseline_service(stack: Stack, port: int) -> tuple[Service, list[Target]]:
    """Symphony's proxy as of ``--baseline`` (its exported checkout), pinned, beside today's."""
    checkout = stack.baseline_checkout
    if checkout is None:
        raise RuntimeError(f"{BASELINE} runs only with --baseline REF")
    service, target = pinned_symphony(stack, port, BASELINE, {"VAR_DIR": str(stack.var / BASELINE)})
    run_from_checkout(service, checkout)
    return service, [target]


def run_from_checkout(service: Service, checkout: Path) -> None:
    """Make ``service`` run the code in ``checkout`` (``baseline_checkout``'s), which Python then finds before
    this repository's editable install."""
    service.env = {**service.env, "PYTHONPATH": str(checkout)}
    service.cwd = checkout


def baseline_checkout(var: Path, ref: str) -> tuple[Path, str]:
    """``ref``'s tree exported (``git archive``) under ``var/baseline/<commit>``, once; and the commit."""
    found = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise SystemExit(f"--baseline {ref!r} is no commit of this repository (try a hash, tag or branch)")
    commit = found.stdout.strip()
    checkout = var / "baseline" / commit[:12]
    if not (checkout / ".exported").exists():
        shutil.rmtree(checkout, ignore_errors=True)
        checkout.mkdir(parents=True)
        say(f"exporting {commit[:12]} to {checkout}")
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive.stdout, check=True)
        (checkout / ".exported").write_text(commit)
    return checkout, commit


def portkey_service(stack: Stack, port: int) -> tuple[Service, list[Target]]:
    script = _portkey_package(stack.var) / "build" / "start-server.js"
    node = shutil.which("node") or "node"
    service = Service(
        "portkey",
        [node, str(script), f"--port={port}", "--headless"],
        f"http://127.0.0.1:{port}/",
        stack.var / "logs" / "portkey.log",
        {"NODE_ENV": "production"},
    )
    headers = {
        "Authorization": f"Bearer {DUMMY_KEY}",
        "x-portkey-provider": PROVIDER,
        "x-portkey-custom-host": stack.sim_openai_base,
    }
    return service, [Target("portkey", f"http://127.0.0.1:{port}/v1/chat/completions", MODEL, headers)]


def litellm_config(stack: Stack) -> Path:
    """LiteLLM's config.yaml (JSON is YAML): the pinned arm, pointed at the simulator."""
    config = {
        "model_list": [
            {
                "model_name": f"{PROVIDER}/{MODEL}",
                "litellm_params": {
                    "model": f"{PROVIDER}/{MODEL}",
                    "api_base": stack.sim_openai_base,
                    "api_key": DUMMY_KEY,
                },
            }
        ],
    }
    path = stack.var / "litellm" / "config.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def litellm_service(stack: Stack, port: int) -> tuple[Service, list[Target]]:
    """One worker (``--num_workers``, pinned); LiteLLM refuses to start without a master key."""
    home = stack.var / "litellm"
    master_key = f"sk-bench-{secrets.token_hex(16)}"
    args = [str(home / "bin" / "litellm"), "--config", str(litellm_config(stack)), "--host", "127.0.0.1"]
    args += ["--num_workers", str(LITELLM_WORKERS)]
    service = Service(
        "litellm",
        [*args, "--port", str(port)],
        f"http://127.0.0.1:{port}/health/liveliness",
        stack.var / "logs" / "litellm.log",
        {"LITELLM_MASTER_KEY": master_key, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_DOCS": "True"},
        cwd=home,
    )
    headers = {"Authorization": f"Bearer {master_key}"}
    return service, [
        Target("litellm", f"http://127.0.0.1:{port}/v1/chat/completions", f"{PROVIDER}/{MODEL}", headers)
    ]


def serve_relay(port: int, upstream: str) -> None:
    """The floor: a bare pass-through of each POST to ``upstream`` (aiohttp), nothing else (blocking)."""
    import aiohttp
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    class Relay:
        session: aiohttp.ClientSession | None = None

        async def relay(self, request: Request) -> Response:
            if self.session is None:
                self.session = aiohttp.ClientSession()
            headers = {
                "content-type": "application/json",
                "authorization": request.headers.get("authorization", ""),
            }
            async with self.session.post(upstream, data=await request.body(), headers=headers) as answer:
                body = await answer.read()
                return Response(body, status_code=answer.status, media_type="application/json")

        async def health(self, request: Request) -> Response:
            return Response(b'{"status":"ok"}', media_type="application/json")

    relay = Relay()
    routes = [
        Route("/v1/chat/completions", relay.relay, methods=["POST"]),
        Route("/health", relay.health, methods=["GET"]),
    ]
    uvicorn.run(
        Starlette(routes=routes),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


def floor_service(stack: Stack, port: int) -> tuple[Service, list[Target]]:
    upstream = f"{stack.sim_openai_base}/chat/completions"
    service = Service(
        "floor",
        [sys.executable, str(Path(__file__).resolve()), "--serve-relay", str(port), upstream],
        f"http://127.0.0.1:{port}/health",
        stack.var / "logs" / "floor.log",
    )
    headers = {"Authorization": f"Bearer {DUMMY_KEY}"}
    return service, [Target("floor", f"http://127.0.0.1:{port}/v1/chat/completions", MODEL, headers)]


SERVICES: dict[str, Callable[[Stack, int], tuple[Service, list[Target]]]] = {
    "symphony": symphony_service,
    "symphony-workers": symphony_workers_service,
    BASELINE: baseline_service,
    "portkey": portkey_service,
    "litellm": litellm_service,
    "floor": floor_service,
}


# --------------------------------------------------------------------------- k6


@dataclass(frozen=True)
class LoadSpec:
    rate: int
    duration_s: float
    timeout_s: float
    max_tokens: int


@dataclass(frozen=True)
class K6Result:
    requests: int
    dropped: int
    failed: int
    timeouts: int
    p50: float | None
    p95: float | None
    p99: float | None


def run_k6(target: Target, load: LoadSpec, log: Path) -> K6Result:
    with tempfile.TemporaryDirectory(prefix="k6-") as tmp:
        summary = Path(tmp) / "summary.json"
        env = {
            "TARGET_URL": target.url,
            "MODEL": target.model,
            "HEADERS_JSON": json.dumps(target.headers),
            "RATE": str(load.rate),
            "DURATION": f"{load.duration_s:g}s",
            "TIMEOUT": f"{load.timeout_s:g}s",
            "MAX_TOKENS": str(load.max_tokens),
            "SUMMARY_PATH": str(summary),
        }
        args = [k6_binary(), "run", "--quiet", "--no-color", "--no-usage-report"]
        args += [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        with log.open("ab") as out:
            code = subprocess.run([*args, str(K6_SCRIPT)], stdout=out, stderr=subprocess.STDOUT).returncode
        if code != 0 or not summary.exists():
            raise RuntimeError(f"k6 failed with exit code {code} against {target.name}; see {log}")
        return parse_summary(json.loads(summary.read_text()))


def _count(metrics: dict[str, Any], name: str, key: str = "count") -> int:
    return int(metrics.get(name, {}).get("values", {}).get(key, 0))


def parse_summary(data: dict[str, Any]) -> K6Result:
    """The figures of one k6 summary (handleSummary's ``data``)."""
    metrics: dict[str, Any] = data["metrics"]
    ok: dict[str, float] = metrics.get("http_req_duration{expected_response:true}", {}).get("values", {})
    has_ok = _count(metrics, "http_req_failed", "fails") > 0
    return K6Result(
        requests=_count(metrics, "http_reqs"),
        dropped=_count(metrics, "dropped_iterations"),
        failed=_count(metrics, "http_req_failed", "passes"),
        timeouts=_count(metrics, "timeouts"),
        p50=ok.get("p(50)") if has_ok else None,
        p95=ok.get("p(95)") if has_ok else None,
        p99=ok.get("p(99)") if has_ok else None,
    )


# --------------------------------------------------------------------------- measuring


@dataclass
class Row:
    """One target at one rate: latency, overhead over direct, failures, cost."""

    rate: int
    target: str
    requests: int
    failed_share: float
    timeout_share: float
    dropped: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    overhead_p50_ms: float | None = None
    overhead_p95_ms: float | None = None
    overhead_p99_ms: float | None = None
    cpu_ms_per_request: float | None = None  # the target's process tree, plus Redis for Symphony
    redis_cpu_ms_per_request: float | None = None  # Redis's part of it (Symphony only)
    rss_mib: float | None = None
    events_per_request: float | None = None
    sustained: bool = True
    error: str | None = None
    repeat: int = 0
    position: int = 0  # its place in the repeat's order


def _row(target: Target, load: LoadSpec, result: K6Result, max_failed_share: float) -> Row:
    offered = result.requests + result.dropped
    failed_share = (result.failed + result.dropped) / offered if offered else 1.0
    return Row(
        rate=load.rate,
        target=target.name,
        requests=result.requests,
        failed_share=failed_share,
        timeout_share=result.timeouts / offered if offered else 0.0,
        dropped=result.dropped,
        p50_ms=result.p50,
        p95_ms=result.p95,
        p99_ms=result.p99,
        sustained=failed_share <= max_failed_share,
    )


def event_count(redis_url: str) -> int:
    """Entries across Symphony's event streams (``symphony:events:<n>``)."""
    client = sync_redis(redis_url)
    try:
        return sum(
            int(client.xlen(key)) for key in client.scan_iter(match="symphony:events:*", _type="stream")
        )
    finally:
        client.close()


@dataclass(frozen=True)
class Bench:
    stack: Stack
    sim_pid: int
    warmup_s: float
    timeout_s: float
    max_tokens: int
    max_failed_share: float

    def measure(self, target: Target, rate: int, duration_s: float) -> Row:
        log = self.stack.var / "logs" / f"k6-{target.name}-{rate}.log"
        log.unlink(missing_ok=True)
        if self.warmup_s > 0:
            run_k6(target, LoadSpec(rate, self.warmup_s, self.timeout_s, self.max_tokens), log)
        self._settle(target)
        load = LoadSpec(rate, duration_s, self.timeout_s, self.max_tokens)
        cpu_before = cpu_seconds(target.pid) if target.pid else 0.0
        redis_before = cpu_seconds(target.redis_pid) if target.redis_pid else 0.0
        events_before = event_count(self.stack.redis_url)
        result = run_k6(target, load, log)
        row = _row(target, load, result, self.max_failed_share)
        per_request = 1000 / max(result.requests, 1)
        if target.pid:
            row.cpu_ms_per_request = (cpu_seconds(target.pid) - cpu_before) * per_request
            row.rss_mib = rss_mib(target.pid)
        if target.redis_pid and row.cpu_ms_per_request is not None:
            row.redis_cpu_ms_per_request = (cpu_seconds(target.redis_pid) - redis_before) * per_request
            row.cpu_ms_per_request += row.redis_cpu_ms_per_request
        self._settle(target)
        if target.name.startswith("symphony"):
            row.events_per_request = (event_count(self.stack.redis_url) - events_before) / max(
                result.requests, 1
            )
        return row

    def _settle(self, target: Target) -> None:
        settle([self.sim_pid, *(pid for pid in (target.pid, target.redis_pid) if pid)])


def add_overhead(rows: list[Row], baselines: dict[str, str]) -> None:
    """Fill each row's overhead: its percentile minus its baseline's at the same rate and repeat."""
    by_key = {(row.rate, row.repeat, row.target): row for row in rows}
    for row in rows:
        base = by_key.get((row.rate, row.repeat, baselines.get(row.target, "direct")))
        if row.target in ("direct", "direct-auto") or base is None:
            continue
        row.overhead_p50_ms = minus(row.p50_ms, base.p50_ms)
        row.overhead_p95_ms = minus(row.p95_ms, base.p95_ms)
        row.overhead_p99_ms = minus(row.p99_ms, base.p99_ms)


def minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# --------------------------------------------------------------------------- set-up


def smoke_check(target: Target, max_tokens: int) -> str:
    """One request through ``target``; the arm that served it, or raise unless it is a chat completion."""
    body = {"model": target.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    response = httpx.post(target.url, json=body, headers=target.headers, timeout=30.0)
    if response.status_code != 200:
        raise RuntimeError(f"{target.name}: HTTP {response.status_code}: {response.text[:300]}")
    content = response.json()["choices"][0]["message"]["content"]
    if not content:
        raise RuntimeError(f"{target.name}: empty completion: {response.text[:300]}")
    return str(response.headers.get("x-symphony-arm", target.model))


def check_routing(target: Target, max_tokens: int, tries: int = 12) -> list[str]:
    """The arms ``symphony-auto`` served in ``tries`` requests; raise if one is not a routed arm."""
    allowed = {f"{provider}/{model}" for provider, model in AUTO_ARMS}
    served = sorted({smoke_check(target, max_tokens) for _ in range(tries)})
    if not set(served) <= allowed:
        raise RuntimeError(f"{target.name} served {served}, outside the routed arms {sorted(allowed)}")
    return served


@contextmanager
def running_stack(var: Path, timeout: float) -> Iterator[tuple[Stack, Service]]:
    """A fresh Redis (no persistence) and the simulator, stopped on exit."""
    server = RedisServer(port=0, data_dir=var / "redis", persist=False).start()
    assert server.process is not None
    sim_port = free_port()
    sim = Service(
        "sim",
        [sys.executable, "-m", "cli", "sim"],
        f"http://127.0.0.1:{sim_port}/health",
        var / "logs" / "sim.log",
        {"SIM_PORT": str(sim_port), "REDIS_URL": server.url, "VAR_DIR": str(var / "sim")},
    )
    try:
        say(f"redis on {server.url}; starting the simulator on port {sim_port}")
        sim.start(timeout)
        sim_url = f"http://127.0.0.1:{sim_port}"
        yield Stack(var=var, redis_url=server.url, sim_url=sim_url, redis_pid=server.process.pid), sim
    finally:
        sim.stop()
        server.stop()


def install(names: Sequence[str], var: Path, args: argparse.Namespace) -> dict[str, str]:
    """Install the selected peers (cached); return every selected gateway's version."""
    versions: dict[str, str] = {}
    for name in ("symphony", "symphony-workers"):
        if name in names:
            versions[name] = _symphony_version()
    if "portkey" in names:
        versions["portkey"] = install_portkey(var, args.portkey_spec)
    if "litellm" in names:
        versions["litellm"] = f"{install_litellm(var, args.litellm_spec)} ({LITELLM_WORKERS} worker)"
    return versions


def _symphony_version() -> str:
    import importlib.metadata

    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return f"{importlib.metadata.version('symphony')} ({rev.stdout.strip() or 'no git'})"


def start_gateways(
    names: Sequence[str], stack: Stack, exits: ExitStack, timeout: float, max_tokens: int
) -> dict[str, Target]:
    """Start each gateway and check it answers; a gateway that fails is reported and skipped."""
    targets: dict[str, Target] = {}
    for name in names:
        service, served = SERVICES[name](stack, free_port())
        say(f"starting {name}: {' '.join(service.args)}")
        exits.callback(service.stop)
        try:
            service.start(timeout)
            for target in served:
                smoke_check(target, max_tokens)
                if target.name == "symphony-auto":
                    say(f"symphony-auto served {', '.join(check_routing(target, max_tokens))}")
        except (RuntimeError, httpx.HTTPError, KeyError, ValueError) as exc:
            say(f"{name} is unavailable: {exc}")
            continue
        redis_pid = stack.redis_pid if name.startswith("symphony") else None
        for target in served:
            targets[target.name] = Target(
                target.name,
                target.url,
                target.model,
                target.headers,
                service.pid,
                target.baseline,
                redis_pid,
            )
    return targets


def order_of(targets: Sequence[str], repeat: int) -> list[str]:
    """The targets in their forward order on even repeats, reversed on odd ones."""
    ordered = sorted(targets, key=TARGETS.index)
    return ordered if repeat % 2 == 0 else ordered[::-1]


def run(args: argparse.Namespace) -> tuple[list[Row], list[Pair], dict[str, str], dict[str, str]]:
    """Every repeat of every rate; returns the rows, the side-by-side runs, the versions and each
    target's baseline."""
    var: Path = args.var_dir.resolve()
    names = [name for name in GATEWAYS if name in args.only]
    versions = install(names, var, args)
    checkout = None
    if args.baseline:  # parse_args put symphony-baseline in names
        checkout, commit = baseline_checkout(var, args.baseline)
        versions[BASELINE] = f"symphony at {commit[:12]}"
    with running_stack(var, args.start_timeout) as (stack, sim), ExitStack() as exits:
        stack = replace(stack, baseline_checkout=checkout)
        pads = pad_auto_arms(stack.sim_url, args.max_tokens)
        say(f"routed arms padded to {AUTO_LATENCY_MS} ms: {pads}")
        auth = {"Authorization": f"Bearer {DUMMY_KEY}"}
        provider, model = AUTO_DIRECT
        auto_base = load_catalog().providers[provider].simulated_base_url(stack.sim_url, provider)
        baselines = {
            "direct": Target("direct", f"{stack.sim_openai_base}/chat/completions", MODEL, auth),
            "direct-auto": Target("direct-auto", f"{auto_base}/chat/completions", model, auth),
        }
        for target in baselines.values():
            smoke_check(target, args.max_tokens)
        gateways = start_gateways(["floor", *names], stack, exits, args.start_timeout, args.max_tokens)
        targets = {**baselines, **gateways}
        bench = Bench(stack, sim.pid, args.warmup, args.timeout, args.max_tokens, args.max_failed_share)
        rows: list[Row] = []
        pairs: list[Pair] = []
        for rate in args.rates:
            for repeat in range(args.repeats):
                for position, name in enumerate(order_of(list(targets), repeat)):
                    row = _measure_one(bench, targets[name], rate, args.duration)
                    row.repeat, row.position = repeat, position
                    rows.append(row)
                for first, second in args.side_by_side:
                    if first in targets and second in targets:
                        pair = measure_side_by_side(
                            bench, targets[first], targets[second], rate, args.duration, repeat
                        )
                        pairs.append(pair)
    expected = [target for name in names for target in TARGETS_OF[name]]
    rows += [
        _unavailable(name, rate, repeat=repeat)
        for rate in args.rates
        for repeat in range(args.repeats)
        for name in expected
        if name not in targets
    ]
    baseline_of = {name: target.baseline for name, target in targets.items()}
    add_overhead(rows, baseline_of)
    return rows, pairs, versions, baseline_of


def _measure_one(bench: Bench, target: Target, rate: int, duration_s: float) -> Row:
    say(f"{rate} req/s -> {target.name}: {bench.warmup_s:g}s warm-up, {duration_s:g}s measured")
    try:
        row = bench.measure(target, rate, duration_s)
    except RuntimeError as exc:
        say(str(exc))
        return _unavailable(target.name, rate, str(exc))
    say(f"   p50 {_ms(row.p50_ms)}  p99 {_ms(row.p99_ms)} ms, failed {row.failed_share:.1%}")
    return row


def _unavailable(
    name: str, rate: int, error: str = "did not start; see var/bench/logs", repeat: int = 0
) -> Row:
    return Row(rate, name, 0, 1.0, 0.0, 0, None, None, None, sustained=False, error=error, repeat=repeat)


# --------------------------------------------------------------------------- side by side


@dataclass
class Pair:
    """Two targets under load at once, each at half the rate: one side-by-side run.

    This VM's speed drifts (a fixed Python loop's CPU time varied from 165 to 331 ms, run after run,
    on the idle machine), so a target measured after another can meet a machine up to twice as fast.
    Side by side, both meet the same one, and their difference is theirs. CPU per request is each
    one's own process tree; a Redis server counts for the target that alone uses it and is left out
    when both use it (the same work for each).
    """

    rate: int  # both together
    repeat: int
    first: Row
    second: Row

    def difference(self, field: str) -> float | None:
        """``second``'s figure minus ``first``'s."""
        return minus(getattr(self.second, field), getattr(self.first, field))

    @property
    def cpu_share(self) -> float | None:
        """The CPU difference as a share of ``first``'s CPU per request."""
        cpu, base = self.difference("cpu_ms_per_request"), self.first.cpu_ms_per_request
        return None if cpu is None or not base else cpu / base


def measure_side_by_side(
    bench: Bench, first: Target, second: Target, rate: int, duration_s: float, repeat: int
) -> Pair:
    """``first`` and ``second`` at ``rate / 2`` each, at once, after a warm-up the same way."""
    half = max(rate // 2, 1)
    say(f"{rate} req/s, {first.name} and {second.name} side by side ({half} each), {duration_s:g}s measured")
    targets = (first, second)
    logs = {t.name: bench.stack.var / "logs" / f"k6-pair-{t.name}-{rate}.log" for t in targets}
    if bench.warmup_s > 0:
        _run_both(targets, LoadSpec(half, bench.warmup_s, bench.timeout_s, bench.max_tokens), logs)
    pids = [pid for target in targets for pid in (target.pid, target.redis_pid) if pid]
    settle([bench.sim_pid, *pids])
    load = LoadSpec(half, duration_s, bench.timeout_s, bench.max_tokens)
    before = {pid: cpu_seconds(pid) for pid in set(pids)}
    results = _run_both(targets, load, logs)
    used = {pid: cpu_seconds(pid) - before[pid] for pid in set(pids)}
    shared_redis = first.redis_pid is not None and first.redis_pid == second.redis_pid
    rows = []
    for target, result in zip(targets, results, strict=True):
        row = _row(target, load, result, bench.max_failed_share)
        per_request = 1000 / max(result.requests, 1)
        if target.pid:
            row.cpu_ms_per_request = used[target.pid] * per_request
            row.rss_mib = rss_mib(target.pid)
        if target.redis_pid and not shared_redis and row.cpu_ms_per_request is not None:
            row.redis_cpu_ms_per_request = used[target.redis_pid] * per_request
            row.cpu_ms_per_request += row.redis_cpu_ms_per_request
        row.repeat = repeat
        rows.append(row)
    pair = Pair(rate, repeat, rows[0], rows[1])
    say(
        "   "
        + ", ".join(
            f"{r.target} p50 {_ms(r.p50_ms)} ms, CPU {figure(r.cpu_ms_per_request, '.3f')} ms/req"
            for r in rows
        )
    )
    return pair


def _run_both(targets: Sequence[Target], load: LoadSpec, logs: dict[str, Path]) -> list[K6Result]:
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        runs = [pool.submit(run_k6, target, load, logs[target.name]) for target in targets]
        return [run.result() for run in runs]


@dataclass(frozen=True)
class PairedDifference:
    """``second`` minus ``first`` side by side at one rate: medians of the repeats' differences, ranges."""

    rate: int
    first: str
    second: str
    repeats: int
    p50_ms: float | None
    p50_range: tuple[float, float] | None
    p99_ms: float | None
    cpu_ms_per_request: float | None
    cpu_share: float | None
    cpu_share_range: tuple[float, float] | None
    failed_share: float  # the larger of the two, in the worst repeat


def paired_differences(pairs: Sequence[Pair]) -> list[PairedDifference]:
    found = []
    keys = sorted({(pair.rate, pair.first.target, pair.second.target) for pair in pairs})
    for rate, first, second in keys:
        group = [p for p in pairs if (p.rate, p.first.target, p.second.target) == (rate, first, second)]
        p50 = [d for d in (pair.difference("p50_ms") for pair in group) if d is not None]
        shares = [share for share in (pair.cpu_share for pair in group) if share is not None]
        found.append(
            PairedDifference(
                rate=rate,
                first=first,
                second=second,
                repeats=len(group),
                p50_ms=median_of(p50),
                p50_range=(min(p50), max(p50)) if p50 else None,
                p99_ms=median_of([pair.difference("p99_ms") for pair in group]),
                cpu_ms_per_request=median_of([pair.difference("cpu_ms_per_request") for pair in group]),
                cpu_share=median_of(shares),
                cpu_share_range=(min(shares), max(shares)) if shares else None,
                failed_share=max(max(p.first.failed_share, p.second.failed_share) for p in group),
            )
        )
    return found


def median_of(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.median(known) if known else None


def paired_table(differences: Sequence[PairedDifference]) -> str:
    if not differences:
        return ""
    head = (
        "\nSide by side (two targets under load at once, half the rate each, so both meet the same machine; "
        "CPU is each one's own, Redis counted only for a target that alone uses it): medians of the "
        "repeats' differences, range in brackets"
    )
    return "\n".join([head, *(paired_line(found) for found in differences)])


def paired_failures(
    differences: Sequence[PairedDifference], asked: Sequence[tuple[str, str]], max_failed_share: float
) -> list[str]:
    """What side-by-side runs lack: a pair asked for and not run, a failure, a missing figure."""
    problems = []
    ran = {(found.first, found.second) for found in differences}
    problems += [
        f"side by side {first},{second}: not run" for first, second in asked if (first, second) not in ran
    ]
    for found in differences:
        name = f"side by side {found.first},{found.second} at {found.rate} req/s"
        if found.failed_share > max_failed_share:
            problems.append(f"{name}: failed share {found.failed_share:.1%}")
        if found.p50_ms is None or found.cpu_ms_per_request is None:
            problems.append(f"{name}: no latency or CPU figure")
    return problems


def figure(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or ``-`` when there is none."""
    return "-" if value is None else format(value, spec)


def paired_line(found: PairedDifference) -> str:
    """One rate's side-by-side difference, as the tables print it."""
    p50_range = "" if found.p50_range is None else " [{:+.2f} .. {:+.2f}]".format(*found.p50_range)
    share_range = (
        "" if found.cpu_share_range is None else " [{:+.1%} .. {:+.1%}]".format(*found.cpu_share_range)
    )
    return (
        f"{found.second} - {found.first} at {found.rate} req/s ({found.rate // 2} each, {found.repeats} "
        f"repeat(s)): p50 {figure(found.p50_ms, '+.2f')} ms{p50_range}, "
        f"p99 {figure(found.p99_ms, '+.2f')} ms, "
        f"CPU {figure(found.cpu_ms_per_request, '+.3f')} ms/req "
        f"({figure(found.cpu_share, '+.1%')}{share_range}), failed {found.failed_share:.1%}"
    )


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Summary:
    rate: int
    target: str
    repeats: int
    sustained_repeats: int
    failed_share: Spread
    p50_ms: Spread
    p99_ms: Spread
    overhead_p50_ms: Spread
    overhead_p95_ms: Spread
    overhead_p99_ms: Spread
    cpu_ms_per_request: Spread
    redis_cpu_ms_per_request: Spread
    rss_mib: Spread
    events_per_request: Spread
    errors: tuple[str, ...]


def summarize(rows: list[Row]) -> list[Summary]:
    groups: dict[tuple[int, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.rate, row.target), []).append(row)
    summaries = []
    for (rate, target), group in sorted(groups.items(), key=lambda kv: (kv[0][0], TARGETS.index(kv[0][1]))):
        measured = [row for row in group if row.error is None]

        def spread(field_name: str, rows: list[Row] = measured) -> Spread:
            return Spread.of([getattr(row, field_name) for row in rows])

        summaries.append(
            Summary(
                rate=rate,
                target=target,
                repeats=len(group),
                sustained_repeats=sum(row.sustained for row in group),
                failed_share=Spread.of([row.failed_share for row in group]),
                p50_ms=spread("p50_ms"),
                p99_ms=spread("p99_ms"),
                overhead_p50_ms=spread("overhead_p50_ms"),
                overhead_p95_ms=spread("overhead_p95_ms"),
                overhead_p99_ms=spread("overhead_p99_ms"),
                cpu_ms_per_request=spread("cpu_ms_per_request"),
                redis_cpu_ms_per_request=spread("redis_cpu_ms_per_request"),
                rss_mib=spread("rss_mib"),
                events_per_request=spread("events_per_request"),
                errors=tuple(sorted({row.error for row in group if row.error})),
            )
        )
    return summaries


def smoke_failures(summaries: list[Summary], targets: Sequence[str]) -> list[str]:
    """Why a smoke run is broken: a target missing, failing, or without a figure it must have."""
    problems: list[str] = []
    seen = {summary.target for summary in summaries}
    problems += [f"{name}: no row" for name in targets if name not in seen]
    for summary in summaries:
        name = f"{summary.target} at {summary.rate} req/s"
        if summary.errors:
            problems.append(f"{name}: {'; '.join(summary.errors)}")
            continue
        if summary.sustained_repeats < summary.repeats:
            problems.append(f"{name}: failed share {summary.failed_share.high:.1%}")
        if summary.p50_ms.median is None:
            problems.append(f"{name}: no latency")
        if summary.target not in ("direct", "direct-auto"):
            if summary.overhead_p50_ms.median is None:
                problems.append(f"{name}: no overhead")
            if summary.cpu_ms_per_request.median is None:
                problems.append(f"{name}: no CPU figure")
        if summary.target.startswith("symphony"):
            events = summary.events_per_request.median
            if events is None or events < 1.9:  # a decision and a usage event per request
                problems.append(f"{name}: {events} events per request, expected 2")
            if summary.redis_cpu_ms_per_request.median is None:
                problems.append(f"{name}: no Redis CPU figure")
    return problems


# --------------------------------------------------------------------------- output


def load_average() -> float:
    """The 1-minute load average: other work on the machine makes every figure noisier."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _spread(spread: Spread, signed: bool = False, digits: int = 1) -> str:
    """``median [low..high]``."""
    if spread.median is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{spread.median:{sign}.{digits}f}"
    if spread.low is not None and spread.high is not None and spread.high != spread.low:
        text += f" [{spread.low:{sign}.{digits}f}..{spread.high:{sign}.{digits}f}]"
    return text


def _note(summary: Summary) -> str:
    notes = list(summary.errors)
    if summary.sustained_repeats < summary.repeats:
        notes.append(f"NOT SUSTAINED in {summary.repeats - summary.sustained_repeats} of {summary.repeats}")
    if summary.events_per_request.median is not None:
        notes.append(f"{summary.events_per_request.median:.2f} events/req")
    return ", ".join(notes)


def table(
    summaries: list[Summary],
    versions: dict[str, str],
    baselines: dict[str, str],
    args: argparse.Namespace,
    load: float,
) -> str:
    head = (
        f"Gateway overhead over the simulator ({args.duration:g} s per run, {args.repeats} repeats per "
        f"rate in alternating order, k6 constant-arrival-rate, timeout {args.timeout:g} s, max_tokens "
        f"{args.max_tokens}); median [min..max] over the repeats"
    )
    targets_line = (
        f"pinned: openai/{MODEL} (42.5 ms, baseline direct); symphony-auto: model auto over "
        + ", ".join(f"{p}/{m}" for p, m in AUTO_ARMS)
        + f" at {AUTO_LATENCY_MS} ms each (baseline direct-auto = {'/'.join(AUTO_DIRECT)}); "
        "floor: bare Starlette+aiohttp relay"
    )
    columns = (
        "rate",
        "target",
        "overhead p50 ms",
        "overhead p95 ms",
        "overhead p99 ms",
        "failed",
        "CPU ms/req",
        "of it Redis",
        "RSS MiB",
        "notes",
    )
    lines = [[str(c) for c in columns]]
    for summary in summaries:
        base = summary.target in ("direct", "direct-auto")
        lines.append(
            [
                str(summary.rate),
                summary.target,
                f"p50 {_spread(summary.p50_ms)}" if base else _spread(summary.overhead_p50_ms, True),
                "" if base else _spread(summary.overhead_p95_ms, True),
                f"p99 {_spread(summary.p99_ms)}" if base else _spread(summary.overhead_p99_ms, True),
                f"{summary.failed_share.high or 0.0:.1%}",
                _spread(summary.cpu_ms_per_request, digits=2),
                _spread(summary.redis_cpu_ms_per_request, digits=2),
                _spread(summary.rss_mib, digits=0),
                _note(summary),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    body = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    body.insert(1, "  ".join("-" * width for width in widths))
    versions_line = "versions: " + ", ".join(f"{name} {version}" for name, version in versions.items())
    load_line = f"1-minute load average before the run: {load:.2f} on {os.cpu_count()} cores"
    return "\n".join([head, targets_line, versions_line, load_line, "", *body])


def _rounded(fields: dict[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 3)
        if isinstance(value, dict):
            return {key: one(inner) for key, inner in value.items()}
        return value

    return {key: one(value) for key, value in fields.items()}


def run_config(args: argparse.Namespace, load: float) -> dict[str, Any]:
    """What a run was asked to do and on what machine: the ``config`` of every k6 bench's JSON."""
    return {
        "rates": args.rates,
        "repeats": args.repeats,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "timeout_s": args.timeout,
        "max_tokens": args.max_tokens,
        "model": f"{PROVIDER}/{MODEL}",
        "load_average_1m_before": load,
        "cpus": os.cpu_count(),
        "smoke": args.smoke,
    }


def as_json(
    rows: list[Row],
    summaries: list[Summary],
    versions: dict[str, str],
    baselines: dict[str, str],
    args: argparse.Namespace,
    load: float,
    pairs: Sequence[Pair] = (),
    differences: Sequence[PairedDifference] = (),
) -> str:
    config = {
        **run_config(args, load),
        "auto_arms": [f"{p}/{m}" for p, m in AUTO_ARMS],
        "auto_latency_ms": AUTO_LATENCY_MS,
        "baselines": baselines,
        "max_failed_share": args.max_failed_share,
    }
    return json.dumps(
        {
            "config": config,
            "versions": versions,
            "summary": [_rounded(asdict(summary)) for summary in summaries],
            "rows": [_rounded(asdict(row)) for row in rows],
            "side_by_side": [_rounded(asdict(found)) for found in differences],
            "side_by_side_rows": [
                {
                    "rate": pair.rate,
                    "repeat": pair.repeat,
                    "first": _rounded(asdict(pair.first)),
                    "second": _rounded(asdict(pair.second)),
                }
                for pair in pairs
            ],
        },
        indent=2,
    )


# --------------------------------------------------------------------------- CLI


def _rates(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive whole numbers")
    return rates


def _gateways(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(GATEWAYS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown gateway(s) {', '.join(unknown)}; choose from {', '.join(GATEWAYS)}"
        )
    return names


def _pair(text: str) -> tuple[str, str]:
    names = [name.strip() for name in text.split(",")]
    if len(names) != 2 or any(name not in TARGETS for name in names) or names[0] == names[1]:
        raise argparse.ArgumentTypeError(f"expected two different targets of {', '.join(TARGETS)}: {text!r}")
    return names[0], names[1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Measure the latency and CPU each gateway adds in front of Symphony's provider simulator "
            "(through-gateway minus direct, p50/p95/p99), plus failures, CPU per request (Symphony's "
            "with its Redis) and RSS, for Symphony's proxy (pinned and routed), a bare relay (the floor), "
            "the Portkey gateway and the LiteLLM proxy, in one run."
        ),
        epilog=(
            "Each rate runs --repeats times, targets in the order direct, direct-auto, floor, symphony, "
            "symphony-auto, symphony-workers, symphony-baseline, portkey, litellm, reversed on every other "
            "repeat. Logs: <var-dir>/logs/."
        ),
    )
    add = parser.add_argument
    add("--rates", type=_rates, default=[200, 500], help="request rates in req/s (default 200,500)")
    add("--duration", type=float, default=20.0, help="measured seconds per target and rate (default 20)")
    add("--warmup", type=float, default=3.0, help="warm-up seconds before each measured run (default 3)")
    add("--repeats", type=int, default=3, help="runs of each rate, order alternating (default 3)")
    add(
        "--only",
        type=_gateways,
        default=[name for name in GATEWAYS if name != BASELINE],
        help="gateways to run, e.g. symphony,portkey (default all but symphony-baseline; the floor always "
        "runs)",
    )
    add("--timeout", type=float, default=5.0, help="per-request timeout in seconds (default 5)")
    add("--max-tokens", type=int, default=5, help="max_tokens per request; keep it 5 (default 5)")
    add(
        "--max-failed-share",
        type=float,
        default=0.01,
        help="a rate counts as sustained at or below this share of failed requests (default 0.01)",
    )
    add(
        "--var-dir",
        type=Path,
        default=ROOT / "var" / "bench",
        help="installs, logs and data (default var/bench)",
    )
    add("--litellm-spec", default=LITELLM_SPEC, help=f"pip requirement for LiteLLM (default {LITELLM_SPEC})")
    add("--portkey-spec", default=PORTKEY_SPEC, help=f"npm package for Portkey (default {PORTKEY_SPEC})")
    add("--start-timeout", type=float, default=120.0, help="seconds to wait for each process to answer")
    add(
        "--smoke",
        action="store_true",
        help="2 s at 20 req/s, Symphony and the floor only, one repeat; exit 1 if anything broke",
    )
    add(
        "--side-by-side",
        type=_pair,
        action="append",
        default=[],
        metavar="FIRST,SECOND",
        help="after each repeat, also run two targets at once at half the rate each, so both meet the "
        "same machine (e.g. symphony,portkey); repeatable",
    )
    add(
        "--baseline",
        metavar="REF",
        help="also run Symphony as of git REF (a commit, tag or branch, exported under <var-dir>/baseline/) "
        "as symphony-baseline, pinned, so a change is measured against the code before it in the same run; "
        "pair them with --side-by-side symphony-baseline,symphony",
    )
    add("--json", action="store_true", help="print JSON instead of the table")
    add("--serve-relay", nargs=2, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rates, args.duration, args.warmup, args.repeats, args.only = [20], 2.0, 1.0, 1, ["symphony"]
        args.side_by_side = [("floor", "symphony")]
        args.var_dir = Path(tempfile.mkdtemp(prefix="symphony-bench-smoke-"))
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.baseline and BASELINE not in args.only:
        args.only = [*args.only, BASELINE]
    elif BASELINE in args.only and not args.baseline:
        parser.error(f"{BASELINE} needs --baseline REF (the commit to run it from)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_relay:
        serve_relay(int(args.serve_relay[0]), args.serve_relay[1])
        return 0
    load = load_average()
    if args.repeats < 3 and not args.smoke:
        say(f"{args.repeats} repeat(s): the spread needs at least 3")
    rows, pairs, versions, baselines = run(args)
    summaries = summarize(rows)
    differences = paired_differences(pairs)
    if args.json:
        print(as_json(rows, summaries, versions, baselines, args, load, pairs, differences))
    else:
        print(table(summaries, versions, baselines, args, load))
        print(paired_table(differences))
    if args.smoke:
        problems = smoke_failures(summaries, ("direct", "direct-auto", "floor", "symphony", "symphony-auto"))
        problems += paired_failures(differences, args.side_by_side, args.max_failed_share)
        for problem in problems:
            say(f"SMOKE FAILED: {problem}")
        if problems:
            return 1  # the logs stay in the temporary var dir
        shutil.rmtree(args.var_dir, ignore_errors=True)
        say("smoke: every target answered with every figure")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
