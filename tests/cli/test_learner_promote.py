"""`symphony learner-promote` as an operator runs it: a real git repository, a real Redis holding the
published challenger, the learner's report saved by `learner-metrics --json`, and the local
stand-in for the GitHub API from the library's tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import cast

import httpx
import redis

from cli.github_standin import GitHubStandIn
from learner.policy_diff import propose
from learner.pull_request import base_champion
from symphony import engine_client
from symphony.events import Promotion, parse_event
from symphony.keys import CHALLENGER_KEY
from symphony.redis_server import RedisServer
from symphony.stream import stream_name
from tests.engineutil import ANALYST_TOKEN, SHARDS, Engine
from tests.github_standin import REPOSITORY, TOKEN, Remote, git
from tests.learner.test_pull_request import report

CHAMPION = "2026-11-27.1"
CHALLENGER = {
    "version": "ch-41",
    "weights": {},
    "tasks": {"code": {"anthropic/claude-sonnet-4-5": 1.0, "deepseek/deepseek-chat": 0.2}},
    "exploration": 0.05,
}
VERSION = "2026-12-01.2"
BRANCH = f"learner/promote-{VERSION}"


def publish(server: RedisServer, challenger: dict[str, object]) -> None:
    client = redis.Redis.from_url(server.url)
    client.set(CHALLENGER_KEY, json.dumps(challenger))
    client.close()


def promote_cli(
    repo: Remote, server: RedisServer | str, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    saved = tmp_path / "learner-metrics.jsonl"
    saved.write_text(json.dumps(report("older")) + "\n" + json.dumps(report(CHAMPION)) + "\n")
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")},
        "REDIS_URL": server if isinstance(server, str) else server.url,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", "learner-promote", "--report", str(saved), "--version", VERSION, *args],
        cwd=repo.work,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_dry_run_prints_the_policy_diff_and_writes_nothing(
    repo: Remote, redis_server: RedisServer, tmp_path: Path
) -> None:
    publish(redis_server, CHALLENGER)
    refs = git(repo.work, "for-each-ref")
    ran = promote_cli(repo, redis_server, tmp_path, "--dry-run")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("dry run: nothing written")
    assert f"branch {BRANCH} from main" in ran.stdout
    assert f": {CHAMPION} -> {VERSION}" in ran.stdout  # the diff's title: the saved report's last line
    assert "- tasks changed: code" in ran.stdout and "- challenger: ch-41" in ran.stdout
    assert git(repo.work, "for-each-ref") == refs


def test_it_opens_a_pull_request_whose_body_is_the_diff_of_the_published_challenger(
    repo: Remote, github: GitHubStandIn, redis_server: RedisServer, tmp_path: Path
) -> None:
    publish(redis_server, CHALLENGER)
    ran = promote_cli(
        repo,
        redis_server,
        tmp_path,
        "--json",
        GITHUB_TOKEN=TOKEN,
        GITHUB_REPOSITORY=REPOSITORY,
        GITHUB_API_URL=github.url,
    )
    assert ran.returncode == 0, ran.stderr
    printed = json.loads(ran.stdout)
    assert printed["result"]["pull_request_number"] == 1 and printed["branch"] == BRANCH
    assert TOKEN not in ran.stdout + ran.stderr
    [call] = github.calls
    assert call.body["head"] == BRANCH and call.body["base"] == "main"
    assert call.body["body"] == printed["diff"]
    # The committed champion is the published challenger's code table, independently proposed here.
    champion, _ = base_champion(repo.work)
    expected = propose(champion, {"code": CHALLENGER["tasks"]["code"]}, VERSION)  # type: ignore[index]
    served = json.loads(git(repo.bare, "show", f"{BRANCH}:policies/champion.json"))
    assert served["tasks"] == json.loads(expected.model_dump_json())["tasks"]


def test_a_report_about_another_challenger_is_refused(
    repo: Remote, redis_server: RedisServer, tmp_path: Path
) -> None:
    publish(redis_server, {**CHALLENGER, "version": "ch-42"})
    ran = promote_cli(repo, redis_server, tmp_path)
    assert ran.returncode == 1
    assert "the report evaluated challenger ch-41, but ch-42 is published now" in ran.stderr
    assert git(repo.work, "branch", "--list", BRANCH) == ""


def test_nothing_published_or_half_a_github_target_says_what_to_do(
    repo: Remote, redis_server: RedisServer, tmp_path: Path
) -> None:
    ran = promote_cli(repo, redis_server, tmp_path)
    assert ran.returncode == 1 and "no challenger is published" in ran.stderr
    publish(redis_server, CHALLENGER)
    ran = promote_cli(repo, redis_server, tmp_path, GITHUB_TOKEN=TOKEN)
    assert ran.returncode == 1
    assert (
        "GITHUB_REPOSITORY is not set: set both GITHUB_TOKEN and GITHUB_REPOSITORY, or neither" in ran.stderr
    )
    assert TOKEN not in ran.stderr


LEARNER_VIEW = Path(__file__).parents[2] / "console/src/views/Learner.tsx"


def promotions_on_the_stream(server: RedisServer) -> list[Promotion]:
    client = redis.Redis.from_url(server.url)
    payloads: list[bytes] = []
    for n in range(SHARDS):
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream_name(n)))
        payloads += [fields[b"e"] for _, fields in entries]
    client.close()
    events = [parse_event(payload) for payload in payloads]
    return [e for e in events if isinstance(e, Promotion)]


def test_each_promotion_it_opens_lands_once_in_the_history_the_console_shows(
    repo: Remote, github: GitHubStandIn, redis_server: RedisServer, engine: Engine, tmp_path: Path
) -> None:
    engine.start()
    publish(redis_server, CHALLENGER)
    github_env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_API_URL": github.url}
    ran = promote_cli(repo, redis_server, tmp_path, "--json", **github_env)
    assert ran.returncode == 0, ran.stderr
    printed = json.loads(ran.stdout)

    # On the stream: what was opened, with no secret in it.
    [event] = promotions_on_the_stream(redis_server)
    assert TOKEN not in event.model_dump_json()
    assert (event.version, event.champion_version, event.challenger_version) == (VERSION, CHAMPION, "ch-41")
    assert event.candidate and event.uplift_low == 0.13  # the saved report's latest window: 0.13
    assert (event.branch, event.commit) == (BRANCH, printed["result"]["commit"])
    assert event.pull_request_url == printed["result"]["pull_request_url"] and event.pull_request_number == 1
    assert event.diff == printed["diff"] and event.forced_over == []

    # In ClickHouse once, as the Learner view's own query reads it.
    engine_client.wait_for_count(engine.url, "SELECT count() FROM promotions FINAL", 1)
    found = re.search(r"const HISTORY_SQL = `([^`]+)`", LEARNER_VIEW.read_text())
    assert found, "the Learner view's history query"
    answer = httpx.post(
        f"{engine.bare_url}/console/query", json={"sql": found.group(1)}, auth=("x", ANALYST_TOKEN)
    )
    assert answer.status_code == 200, answer.text
    [row] = [dict(zip(answer.json()["columns"], r, strict=True)) for r in answer.json()["rows"]]
    assert row["at_ms"] == event.ts and row["version"] == VERSION and row["candidate"] is True
    assert row["pull_request_url"] == event.pull_request_url and row["diff"] == event.diff
    assert row["uplift_low"] == 0.13 and row["branch"] == BRANCH


def test_a_promotion_redis_cannot_record_still_stands(
    repo: Remote, github: GitHubStandIn, tmp_path: Path
) -> None:
    challenger = tmp_path / "challenger.json"
    challenger.write_text(json.dumps(CHALLENGER))
    ran = promote_cli(
        repo,
        "redis://127.0.0.1:9/0",  # the discard port: nothing answers there
        tmp_path,
        "--challenger",
        str(challenger),
        GITHUB_TOKEN=TOKEN,
        GITHUB_REPOSITORY=REPOSITORY,
        GITHUB_API_URL=github.url,
    )
    assert ran.returncode == 0, ran.stderr
    assert "pull request #1" in ran.stdout
    assert "not recorded in the promotion history" in ran.stderr and "the pull request stand" in ran.stderr
