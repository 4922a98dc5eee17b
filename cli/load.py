"""``symphony load``: open-loop traffic through the proxy, with feedback drawn from the simulator's truth.

Requests leave at a fixed rate whatever the answers do (open loop, so a slow proxy
meets the same load as a fast one), up to a cap of requests in flight. Each one is
a chat request with an app key (``--api-key``, by default the development key in
``var/dev-key``), labelled with ``x-symphony-task`` (and ``x-symphony-app``, which
names the app only when the proxy's auth is disabled; otherwise the key does),
sent to the proxy's OpenAI-compatible ``/v1/chat/completions`` or
Anthropic-compatible ``/v1/messages``, streamed or not. From each answer the
generator reads ``x-symphony-decision-id`` and ``x-symphony-arm`` and posts a
feedback score to ``/v1/feedback``: the arm's ground-truth quality for the task
(``GET /admin/truth`` on the simulator) plus Gaussian noise, clipped to [0, 1], for a
share of the answers (``--feedback-share``: the others are never scored), each after
an exponential delay (``--feedback-delay``, its mean in seconds), as users' scores come.

The demo, the chaos tests and the benchmarks drive ``run_load``; ``main`` is the
command line (``symphony load --rate 50 --duration 30 --tasks chat=0.5,code=0.5``).
Plain HTTP (httpx over aiohttp) rather than the SDKs: at hundreds of requests a
second the generator must cost less CPU than the proxy it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx
import httpx_aiohttp

from cli.report import progress_printer, render_table
from symphony.clock import monotonic
from symphony.secret_files import read_secret
from symphony.settings import Settings, load_settings

Inbound = Literal["openai", "anthropic", "mixed"]
INBOUNDS: tuple[Inbound, ...] = ("openai", "anthropic", "mixed")
FEEDBACK_SOURCE = "symphony-load"
TASK_PROMPTS: dict[str, str] = {
    "chat": "Say hello to a new user and ask how you can help today.",
    "code": "Write a Python function that merges two sorted lists in linear time.",
    "summarize": "Summarize in one sentence: rate limits cap how many requests a client may send per minute.",
    "extract": "Extract the city and date from: 'Meet me in Lisbon on 3 March 2027 at noon.'",
    "reasoning": "A train leaves at 9:40 and arrives at 13:05. How long is the trip? Think step by step.",
}
DEFAULT_PROMPT = "Answer briefly: what makes a good routing decision?"


@dataclass(frozen=True)
class LoadConfig:
    """What traffic to send. Weights in ``tasks`` need not sum to 1."""

    rate: float = 20.0  # requests per second
    duration: float = 10.0  # seconds of sending (in-flight requests are then awaited)
    tasks: Mapping[str, float] = field(default_factory=lambda: {"chat": 1.0})
    apps: tuple[str, ...] = ("load",)
    stream_share: float = 0.0
    concurrency: int = 256  # requests in flight at most; beyond it sending waits
    inbound: Inbound = "openai"
    model: str = "auto"
    max_tokens: int = 64
    feedback_share: float = 1.0  # share of successful answers that get a feedback score
    feedback_noise: float = 0.1  # standard deviation of the noise added to the true quality
    feedback_delay_s: float = 0.0  # mean of the exponential delay before a score is sent (0: at once)
    timeout_s: float = 30.0
    seed: int | None = None
    api_key: str = "auth-disabled"  # the app key every request (and feedback post) carries
    progress_s: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "rate": self.rate > 0,
            "duration": self.duration > 0,
            "tasks": bool(self.tasks) and all(w > 0 for w in self.tasks.values()),
            "apps": bool(self.apps),
            "stream_share": 0 <= self.stream_share <= 1,
            "concurrency": self.concurrency >= 1,
            "inbound": self.inbound in INBOUNDS,
            "max_tokens": self.max_tokens >= 1,
            "feedback_share": 0 <= self.feedback_share <= 1,
            "feedback_noise": self.feedback_noise >= 0,
            "feedback_delay_s": self.feedback_delay_s >= 0,
            "timeout_s": self.timeout_s > 0,
            "progress_s": self.progress_s > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid load settings: {', '.join(bad)}")

    @property
    def total(self) -> int:
        return max(1, round(self.rate * self.duration))


@dataclass
class LoadReport:
    sent: int = 0
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # by HTTP status or exception type
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50 / p95 / p99 of successful requests
    arms: dict[str, int] = field(default_factory=dict)  # successful requests per arm that served them
    feedback_posted: int = 0
    feedback_failed: dict[str, int] = field(default_factory=dict)  # e.g. {"404": n} before the API exists
    elapsed_s: float = 0.0

    @property
    def success_share(self) -> float:
        return self.ok / self.sent if self.sent else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"success_share": round(self.success_share, 4)}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class _Feedback:
    """A request's score, drawn when it is sent: a seed then fixes it whatever order the answers land in."""

    scored: bool  # whether a user ever scores the answer
    delay_s: float  # how long after the answer the score comes
    noise: float  # a standard normal draw, scaled by ``feedback_noise``


@dataclass(frozen=True)
class _Request:
    app: str
    task: str
    inbound: Literal["openai", "anthropic"]
    stream: bool
    feedback: _Feedback


@dataclass(frozen=True)
class _Outcome:
    failure: str | None  # None when the request succeeded
    latency_s: float
    decision_id: str | None
    arm: str | None


class _LoadRun:
    """One run: the schedule, the requests, the feedback and the running tallies."""

    def __init__(
        self,
        proxy_url: str,
        config: LoadConfig,
        truth: Mapping[str, Mapping[str, float]],
        client: httpx.AsyncClient,
        say: Callable[[str], None],
    ) -> None:
        self._proxy = proxy_url.rstrip("/")
        self._config = config
        self._truth = truth
        self._client = client
        self._say = say
        self._rng = random.Random(config.seed)
        self._tasks, self._weights = list(config.tasks), list(config.tasks.values())
        self._failed: Counter[str] = Counter()
        self._feedback_failed: Counter[str] = Counter()
        self._arms: Counter[str] = Counter()
        self._latencies: list[float] = []
        self._sent = self._ok = self._feedback_posted = self._in_flight = 0
        self._delayed_feedback: set[asyncio.Task[None]] = set()  # scores on their way, awaited at the end

    async def run(self) -> LoadReport:
        started = monotonic()
        progress = asyncio.create_task(self._progress(started))
        try:
            await self._send_all(started)
            if self._delayed_feedback:
                await asyncio.gather(*self._delayed_feedback)
        finally:
            progress.cancel()
        return self._report(monotonic() - started)

    async def _send_all(self, started: float) -> None:
        config = self._config
        slots = asyncio.Semaphore(config.concurrency)
        running: set[asyncio.Task[None]] = set()
        for index in range(config.total):
            delay = started + index / config.rate - monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(self._one(self._draw(), slots))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)

    def _draw(self) -> _Request:
        config, rng = self._config, self._rng
        inbound = config.inbound if config.inbound != "mixed" else rng.choice(("openai", "anthropic"))
        return _Request(
            app=rng.choice(config.apps),
            task=rng.choices(self._tasks, self._weights)[0],
            inbound=inbound,
            stream=rng.random() < config.stream_share,
            feedback=self._draw_feedback(),
        )

    def _draw_feedback(self) -> _Feedback:
        config, rng = self._config, self._rng
        mean = config.feedback_delay_s
        return _Feedback(
            scored=rng.random() < config.feedback_share,
            delay_s=rng.expovariate(1.0 / mean) if mean > 0 else 0.0,
            noise=rng.gauss(0.0, 1.0),
        )

    async def _one(self, request: _Request, slots: asyncio.Semaphore) -> None:
        self._sent += 1
        self._in_flight += 1
        try:
            outcome = await self._call(request)
            self._tally(outcome)
            if outcome.failure is None and outcome.decision_id and outcome.arm:
                self._score_later(outcome.decision_id, outcome.arm, request)
        finally:
            self._in_flight -= 1
            slots.release()

    async def _call(self, request: _Request) -> _Outcome:
        url, headers, body, done_marker = self._build(request)
        started = monotonic()
        try:
            async with self._client.stream("POST", url, json=body, headers=headers) as response:
                content = b"".join([chunk async for chunk in response.aiter_bytes()])
        except httpx.HTTPError as exc:
            return _Outcome(type(exc).__name__, monotonic() - started, None, None)
        latency = monotonic() - started
        decision_id = response.headers.get("x-symphony-decision-id")
        arm = response.headers.get("x-symphony-arm")
        failure = None
        if response.status_code != 200:
            failure = str(response.status_code)
        elif request.stream and done_marker not in content:
            failure = "incomplete_stream"  # the stream ended without its final event
        return _Outcome(failure, latency, decision_id, arm)

    def _build(self, request: _Request) -> tuple[str, dict[str, str], dict[str, Any], bytes]:
        """URL, headers, body, and the bytes that end a complete stream, for one request."""
        config = self._config
        messages = [{"role": "user", "content": TASK_PROMPTS.get(request.task, DEFAULT_PROMPT)}]
        labels = {"x-symphony-app": request.app, "x-symphony-task": request.task}
        body: dict[str, Any] = {
            "model": config.model,
            "messages": messages,
            "max_tokens": config.max_tokens,
            "stream": request.stream,
        }
        if request.inbound == "anthropic":
            headers = {"x-api-key": config.api_key, "anthropic-version": "2023-06-01", **labels}
            return f"{self._proxy}/v1/messages", headers, body, b"message_stop"
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        headers = {"authorization": f"Bearer {config.api_key}", **labels}
        return f"{self._proxy}/v1/chat/completions", headers, body, b"data: [DONE]"

    @property
    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._config.api_key}"}

    def _tally(self, outcome: _Outcome) -> None:
        if outcome.failure is not None:
            self._failed[outcome.failure] += 1
            return
        self._ok += 1
        self._latencies.append(outcome.latency_s * 1000)
        if outcome.arm:
            self._arms[outcome.arm] += 1

    def _score_later(self, decision_id: str, arm: str, request: _Request) -> None:
        """Send the score after its delay (as a user's thumbs come a while later), off the slot."""
        task = asyncio.create_task(self._feedback_after(decision_id, arm, request))
        self._delayed_feedback.add(task)
        task.add_done_callback(self._delayed_feedback.discard)

    async def _feedback_after(self, decision_id: str, arm: str, request: _Request) -> None:
        feedback = request.feedback
        quality = self._truth.get(arm, {}).get(request.task)
        if quality is None or not feedback.scored:
            return
        if feedback.delay_s > 0:
            await asyncio.sleep(feedback.delay_s)
        score = min(1.0, max(0.0, quality + self._config.feedback_noise * feedback.noise))
        await self._post_feedback(decision_id, score)

    async def _post_feedback(self, decision_id: str, score: float) -> None:
        body = {"decision_id": decision_id, "score": round(score, 4), "source": FEEDBACK_SOURCE}
        try:
            response = await self._client.post(f"{self._proxy}/v1/feedback", json=body, headers=self._auth)
        except httpx.HTTPError as exc:
            self._feedback_failed[type(exc).__name__] += 1
            return
        if response.status_code in (200, 201, 202):
            self._feedback_posted += 1
        else:
            self._feedback_failed[str(response.status_code)] += 1

    async def _progress(self, started: float) -> None:
        while True:
            await asyncio.sleep(self._config.progress_s)
            p50 = percentile(sorted(self._latencies), 50)
            failed = sum(self._failed.values())
            self._say(
                f"load {monotonic() - started:6.1f}s  sent {self._sent}/{self._config.total}  ok {self._ok}  "
                f"failed {failed}  in flight {self._in_flight}  p50 {p50:.0f} ms"
            )

    def _report(self, elapsed_s: float) -> LoadReport:
        latencies = sorted(self._latencies)
        return LoadReport(
            sent=self._sent,
            ok=self._ok,
            failed=dict(self._failed.most_common()),
            latency_ms={f"p{q}": round(percentile(latencies, q), 1) for q in (50, 95, 99)},
            arms=dict(self._arms.most_common()),
            feedback_posted=self._feedback_posted,
            feedback_failed=dict(self._feedback_failed.most_common()),
            elapsed_s=round(elapsed_s, 3),
        )


def fetch_truth(simulator_url: str, timeout_s: float = 5.0) -> dict[str, dict[str, float]]:
    """The simulator's ground truth ``{"provider/model": {task: quality}}`` (empty without a simulator)."""
    if not simulator_url:
        return {}
    response = httpx.get(f"{simulator_url.rstrip('/')}/admin/truth", timeout=timeout_s)
    response.raise_for_status()
    truth: dict[str, dict[str, float]] = response.json()
    return truth


def run_load(
    proxy_url: str, simulator_url: str, config: LoadConfig, say: Callable[[str], None] = print
) -> LoadReport:
    """Send ``config``'s traffic through the proxy at ``proxy_url`` and report what happened.

    Blocking; runs its own event loop. ``simulator_url`` is where the ground truth for
    feedback scores comes from ("" sends no feedback).
    """
    truth = fetch_truth(simulator_url)
    say(
        f"load: {config.total} requests at {config.rate:g}/s for {config.duration:g}s to {proxy_url} "
        f"({config.inbound}, {config.stream_share:.0%} streamed, tasks {dict(config.tasks)})"
    )
    return asyncio.run(_run(proxy_url, config, truth, say))


async def _run(
    proxy_url: str, config: LoadConfig, truth: Mapping[str, Mapping[str, float]], say: Callable[[str], None]
) -> LoadReport:
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    transport = httpx_aiohttp.AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(transport=transport, timeout=config.timeout_s) as client:
        return await _LoadRun(proxy_url, config, truth, client, say).run()


# --- command line --------------------------------------------------------------------------------


def parse_weights(text: str) -> dict[str, float]:
    """``"chat=0.5,code=0.5"`` (a bare name weighs 1) -> ``{"chat": 0.5, "code": 0.5}``."""
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition("=")
        try:
            weights[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad weight in {item!r}: expected name=number") from None
    if not weights:
        raise argparse.ArgumentTypeError("expected at least one task, e.g. chat=0.5,code=0.5")
    return weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``symphony load`` options (defaults are ``LoadConfig``'s)."""
    defaults = LoadConfig()
    add = parser.add_argument
    add("--rate", type=float, default=defaults.rate, help="requests per second (default %(default)s)")
    add("--duration", type=float, default=defaults.duration, help="seconds of sending (default %(default)s)")
    add(
        "--tasks",
        type=parse_weights,
        default=dict(defaults.tasks),
        help="the tasks to send (x-symphony-task) and their weights, e.g. chat=0.5,code=0.5 (default chat)",
    )
    add("--apps", default=",".join(defaults.apps), help="comma list of app names (default %(default)s)")
    add(
        "--stream-share",
        type=float,
        default=defaults.stream_share,
        help="share of requests sent streaming, 0 to 1 (default %(default)s)",
    )
    add(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help="requests in flight at most; beyond it sending waits (default %(default)s)",
    )
    add(
        "--inbound",
        choices=INBOUNDS,
        default=defaults.inbound,
        help="the API requests use: OpenAI chat completions, Anthropic messages, or both"
        " mixed (default %(default)s)",
    )
    add(
        "--model",
        default=defaults.model,
        help="the model asked for: auto, or a catalog model (default %(default)s)",
    )
    add(
        "--max-tokens",
        type=int,
        default=defaults.max_tokens,
        help="max_tokens of each request (default %(default)s)",
    )
    add(
        "--feedback-share",
        type=float,
        default=defaults.feedback_share,
        help="share of answers that get a feedback score, 0 to 1 (default %(default)s)",
    )
    add(
        "--feedback-noise",
        type=float,
        default=defaults.feedback_noise,
        help="standard deviation of the noise added to the simulator's true quality (default %(default)s)",
    )
    add(
        "--feedback-delay",
        type=float,
        default=defaults.feedback_delay_s,
        help="mean seconds before a score is sent (exponential; default 0: at once)",
    )
    add("--seed", type=int, default=None, help="random seed, for a repeatable run (default: a new one)")
    add("--api-key", default="", help="the app key to send (default: the development key in var/dev-key)")
    add("--proxy-url", default="", help="the proxy to send to (default: PROXY_HOST and PROXY_PORT)")
    add(
        "--simulator-url",
        default="",
        help="where feedback's true quality is read (default: the settings' simulator URL)",
    )
    add("--json", action="store_true", help="print the report as JSON (progress goes to stderr)")


def config_from_args(args: argparse.Namespace, api_key: str) -> LoadConfig:
    return LoadConfig(
        rate=args.rate,
        duration=args.duration,
        tasks=args.tasks,
        apps=tuple(app.strip() for app in args.apps.split(",") if app.strip()),
        stream_share=args.stream_share,
        concurrency=args.concurrency,
        inbound=args.inbound,
        model=args.model,
        max_tokens=args.max_tokens,
        feedback_share=args.feedback_share,
        feedback_noise=args.feedback_noise,
        feedback_delay_s=args.feedback_delay,
        seed=args.seed,
        api_key=api_key,
    )


def render_report(report: LoadReport) -> str:
    rows: list[tuple[str, Any]] = [
        ("sent", report.sent),
        ("ok", report.ok),
        ("success share", f"{report.success_share:.2%}"),
        *((f"failed {reason}", count) for reason, count in report.failed.items()),
        *((f"latency {name} (ms)", value) for name, value in report.latency_ms.items()),
        *((f"arm {arm}", count) for arm, count in report.arms.items()),
        ("feedback posted", report.feedback_posted),
        *((f"feedback failed {reason}", count) for reason, count in report.feedback_failed.items()),
        ("elapsed (s)", report.elapsed_s),
    ]
    return render_table(("measure", "value"), [(name, str(value)) for name, value in rows])


def command(settings: Settings, args: argparse.Namespace) -> int:
    """``symphony load``: run, print progress (to stderr), then the report; exit 1 when nothing succeeded."""
    api_key = args.api_key or read_secret(settings.dev_key_file)
    if api_key is None and not settings.auth_disabled:
        print(
            f"no app key: pass --api-key, or start the stack with `symphony up`, which writes one to "
            f"{settings.dev_key_file}",
            file=sys.stderr,
        )
        return 2
    try:
        config = config_from_args(args, api_key or LoadConfig.api_key)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    say = progress_printer()

    proxy_url = args.proxy_url or settings.proxy_url
    report = run_load(proxy_url, args.simulator_url or settings.resolved_sim_url, config, say=say)
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_report(report), flush=True)
    if report.ok == 0:
        reasons = ", ".join(f"{reason} x{count}" for reason, count in report.failed.items()) or "none sent"
        say(f"symphony load: none of the {report.sent} requests succeeded ({reasons})")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    description = "Open-loop traffic through the proxy, with feedback drawn from the simulator's truth."
    parser = argparse.ArgumentParser(prog="symphony load", description=description)
    add_arguments(parser)
    return command(load_settings(), parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
