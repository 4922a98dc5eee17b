"""The workload generator against the real simulator and proxy (in-process, bundled Redis)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from cli.load import INBOUNDS, LoadConfig, main, parse_weights, percentile, run_load
from symphony.catalog import load_catalog
from symphony.redis_server import RedisServer
from tests.proxy_stack import ProxyStack


@pytest.fixture
def stack(redis_server: RedisServer) -> Iterator[ProxyStack]:
    with ProxyStack(redis_server, seed=5) as running:
        yield running


def test_load_labels_requests_and_posts_feedback_from_truth(stack: ProxyStack) -> None:
    config = LoadConfig(
        rate=25,
        duration=2,
        tasks={"chat": 1, "code": 1},
        apps=("app-a", "app-b"),
        stream_share=0.5,
        inbound="mixed",  # the OpenAI and Anthropic inbound APIs both
        max_tokens=16,
        feedback_noise=0.0,  # scores are then exactly the truth, checkable below
        seed=5,
        progress_s=0.5,
        api_key=stack.key,
    )
    said: list[str] = []
    report = run_load(stack.url, stack.sim.url, config, say=said.append)

    assert report.sent == 50 and report.ok == 50 and report.failed == {}
    assert sum(report.arms.values()) == 50 and len(report.arms) > 1
    assert 0 < report.latency_ms["p50"] <= report.latency_ms["p95"] <= report.latency_ms["p99"]
    assert report.elapsed_s >= 1.9
    assert any(line.startswith("load ") for line in said)

    truth = httpx.get(f"{stack.sim.url}/admin/truth").json()
    events = stack.events()
    decisions = {d.decision_id: d for d in events.decisions}
    assert {d.app for d in decisions.values()} == {"tests"}  # the key's app, whatever the labels say
    assert {d.task for d in decisions.values()} == {"chat", "code"}
    assert {d.stream for d in decisions.values()} == {True, False}
    assert report.feedback_posted == 50 and report.feedback_failed == {}
    assert len(events.feedback) == 50
    for feedback in events.feedback:
        decision = decisions[feedback.decision_id]
        assert feedback.source == "symphony-load"
        assert feedback.score == pytest.approx(
            truth[f"{decision.provider}/{decision.model}"][decision.task], abs=1e-4
        )


def test_load_counts_failures_by_status_and_posts_no_feedback(stack: ProxyStack) -> None:
    for provider in load_catalog().providers:
        stack.faults(provider, rate_5xx=1.0)
    report = run_load(
        stack.url,
        stack.sim.url,
        LoadConfig(rate=10, duration=1, seed=1, max_tokens=4, api_key=stack.key),
        say=lambda _: None,
    )
    assert report.sent == 10 and report.ok == 0 and sum(report.failed.values()) == 10
    assert all(status.isdigit() and int(status) >= 500 for status in report.failed)
    assert report.feedback_posted == 0 and report.latency_ms == {"p50": 0.0, "p95": 0.0, "p99": 0.0}


def test_feedback_comes_late_for_some_answers_and_never_for_others(stack: ProxyStack) -> None:
    config = LoadConfig(
        rate=40,
        duration=1,
        max_tokens=4,
        feedback_share=0.5,
        feedback_delay_s=0.5,
        seed=9,
        progress_s=0.5,
        api_key=stack.key,
    )
    report = run_load(stack.url, stack.sim.url, config, say=lambda _: None)
    assert report.ok == 40 and 10 <= report.feedback_posted <= 30 and report.feedback_failed == {}
    again = run_load(stack.url, stack.sim.url, config, say=lambda _: None)
    assert again.feedback_posted == report.feedback_posted  # the seed fixes who scores, in any answer order
    events = stack.events()
    assert (
        len(events.feedback) == report.feedback_posted + again.feedback_posted
    )  # every score sent, even those still waiting at the end
    decided = {d.decision_id: d.ts for d in events.decisions}
    lags = sorted(f.ts - decided[f.decision_id] for f in events.feedback)
    assert (
        lags[len(lags) // 2] >= 150
    )  # median of an exponential with a 500 ms mean: about 350 ms after the answer


def test_main_prints_a_json_report(stack: ProxyStack, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--rate", "10", "--duration", "1", "--tasks", "summarize=2,extract", "--apps", "cli"]
    argv += ["--proxy-url", stack.url, "--simulator-url", stack.sim.url, "--json", "--seed", "3"]
    argv += ["--api-key", stack.key]
    assert main(argv) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["sent"] == 10 and report["ok"] == 10 and report["success_share"] == 1.0
    assert "load:" in out.err  # progress goes to stderr with --json


def test_main_exits_1_when_every_request_failed(
    stack: ProxyStack, capsys: pytest.CaptureFixture[str]
) -> None:
    for provider in load_catalog().providers:
        stack.faults(provider, rate_5xx=1.0)
    argv = ["--rate", "10", "--duration", "1", "--max-tokens", "4", "--seed", "1", "--api-key", stack.key]
    argv += ["--proxy-url", stack.url, "--simulator-url", stack.sim.url]
    assert main([*argv, "--json"]) == 1
    out = capsys.readouterr()
    assert json.loads(out.out)["ok"] == 0  # the report is still all of stdout
    assert "none of the 10 requests succeeded" in out.err
    assert main(argv) == 1
    out = capsys.readouterr()
    assert out.out.splitlines()[0].split() == ["measure", "value"]  # the table alone: progress is on stderr
    assert "load:" not in out.out and "load:" in out.err


def test_every_option_of_load_is_described(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main as symphony

    with pytest.raises(SystemExit) as exited:
        symphony(["load", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    options = [line.split()[0] for line in shown.splitlines() if line.startswith("  -")]
    assert "--rate" in options and "--seed" in options and len(options) >= 18
    # argparse writes a description after two spaces on the option's line, or on the next, indented.
    lines = shown.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("  -"):
            following = lines[index + 1] if index + 1 < len(lines) else ""
            assert re.search(r"\S {2,}\S", line) or following.startswith(" " * 24), f"undescribed: {line}"


def test_config_and_parsing() -> None:
    assert parse_weights("chat=0.5, code=0.5,reasoning") == {"chat": 0.5, "code": 0.5, "reasoning": 1.0}
    with pytest.raises(ValueError, match="rate, stream_share"):
        LoadConfig(rate=0, stream_share=2)
    with pytest.raises(ValueError, match="tasks"):
        LoadConfig(tasks={"chat": 0})
    assert LoadConfig(rate=3, duration=0.5).total == 2
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert set(INBOUNDS) == {"openai", "anthropic", "mixed"}
