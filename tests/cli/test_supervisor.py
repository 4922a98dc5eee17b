"""`symphony up` as a supervisor: the restart policy, each part's environment, giving up on a part."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from cli.child_env import may_receive
from cli.restart_policy import (
    RESTART_FIRST_DELAY_S,
    RESTART_MAX_DELAY_S,
    RESTART_WINDOW_S,
    RESTARTS_PER_WINDOW,
    RestartHistory,
    RestartPolicy,
)
from cli.supervisor import Stack
from symphony.clock import wall_ms
from symphony.redis_server import answers
from symphony.settings import Settings
from tests.partsutil import PARTS, environ_of, part_pids, wait_for_new_pid
from tests.stackutil import processes_of, stack_env, symphony_up

# --- the restart policy -----------------------------------------------------------------------------------


def test_restarts_back_off_doubling_from_the_first_delay_up_to_the_cap() -> None:
    history = RestartHistory(RestartPolicy(first_delay=0.5, max_delay=4.0, restarts_per_window=7, window=300))
    restarts = [history.after_death(now=float(t)) for t in range(7)]
    assert [(r.attempt, r.delay) for r in restarts if r is not None] == [
        (1, 0.5),
        (2, 1.0),
        (3, 2.0),
        (4, 4.0),
        (5, 4.0),
        (6, 4.0),
        (7, 4.0),
    ]


def test_the_default_policy_allows_five_restarts_in_five_minutes_from_half_a_second() -> None:
    assert (RESTART_FIRST_DELAY_S, RESTART_MAX_DELAY_S, RESTARTS_PER_WINDOW, RESTART_WINDOW_S) == (
        0.5,
        30.0,
        5,
        300.0,
    )
    history = RestartHistory()
    delays = [r.delay for t in range(5) if (r := history.after_death(float(t))) is not None]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert history.after_death(5.0) is None


def test_it_gives_up_on_the_death_after_the_restarts_a_window_allows() -> None:
    history = RestartHistory(RestartPolicy(restarts_per_window=3, window=60.0))
    assert all(history.after_death(t) is not None for t in (0.0, 10.0, 20.0))
    assert history.after_death(30.0) is None
    assert history.after_death(59.9) is None  # the restart at 0 s is still inside the window
    # At 60 s the restart at 0 s leaves the window: one more may be made, at the delay of the third.
    again = history.after_death(60.0)
    assert again is not None and (again.attempt, again.delay) == (3, 2.0)


def test_a_part_that_stayed_up_a_whole_window_starts_again_from_the_first_delay() -> None:
    history = RestartHistory(RestartPolicy(restarts_per_window=3, window=60.0))
    assert [r.delay for t in (0.0, 1.0, 2.0) if (r := history.after_death(t)) is not None] == [0.5, 1.0, 2.0]
    later = history.after_death(62.0)
    assert later is not None and (later.attempt, later.delay) == (1, 0.5)


# --- least privilege: what each real child holds ---------------------------------------------------------

PROVIDER_KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-0123456789",
    "GEMINI_API_KEY": "test-gemini-0123456789",
    "PERPLEXITY_API_KEY": "pplx-test-0123456789",
    "VENICE_API_KEY": "test-venice-0123456789",
    "XAI_API_KEY": "xai-test-0123456789",
    "DEEPSEEK_API_KEY": "sk-test-deepseek-0123456789",
}
ANTHROPIC_KEY = "sk-ant-test-0123456789"  # given as a file, ANTHROPIC_API_KEY_FILE
TOKENS = {"ADMIN_TOKEN": "admin-test-token-0123456789", "ANALYST_TOKEN": "analyst-test-token-0123456789"}
ALERTS = {
    "SLACK_WEBHOOK_URL": "https://hooks.example.com/T0/B0/secret",
    "PAGERDUTY_ROUTING_KEY": "pd-test-0123",
}
UNRELATED = {"SOME_OTHER_TOOL_TOKEN": "other-tool-secret-0123456789"}


def test_each_part_holds_only_the_environment_its_table_allows(tmp_path: Path) -> None:
    key_file = tmp_path / "anthropic-key"
    key_file.write_text(ANTHROPIC_KEY + "\n")
    stack = stack_env(
        tmp_path,
        **PROVIDER_KEYS,
        ANTHROPIC_API_KEY_FILE=str(key_file),
        **TOKENS,
        **ALERTS,
        **UNRELATED,
        SIMULATED_PROVIDERS="all",  # the fake keys go to the simulator, which takes any key
    )
    with symphony_up(stack) as up:
        pids = part_pids(up.pid)
        assert sorted(pids) == sorted(PARTS)
        env = {part: environ_of(pid) for part, pid in pids.items()}
        # The limited environments are enough: the proxy answers with the dev key, the engine with our token.
        answer = httpx.post(
            f"{stack.proxy_url}/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
            headers={"authorization": f"Bearer {stack.dev_key}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        engine_url = f"http://127.0.0.1:{stack.env['ENGINE_PORT']}"
        queried = httpx.post(
            f"{engine_url}/query",
            json={"sql": "SELECT 1"},
            headers={"authorization": f"Bearer {TOKENS['ANALYST_TOKEN']}"},
            timeout=30,
        )
        assert queried.status_code == 200, queried.text
        # ... and the scheduler sends a job through the proxy as its app with its token alone.
        job = {
            "request": {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
            "deadline_ms": wall_ms() + 3_600_000,
            "tokens": 100,
            "providers": ["gemini"],
        }
        auth = {"authorization": f"Bearer {stack.dev_key}"}
        created = httpx.post(f"{stack.proxy_url}/v1/jobs", json=job, headers=auth, timeout=30)
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 30
        state = created.json()
        while state["state"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
            state = httpx.get(f"{stack.proxy_url}/v1/jobs/{state['id']}", headers=auth, timeout=30).json()
        assert state["state"] == "done", state
        assert state["result"]["object"] == "chat.completion"

    for part, variables in env.items():
        assert [name for name in variables if not may_receive(part, name)] == [], part
        assert variables["VAR_DIR"] == str(stack.var_dir) and variables["REDIS_URL"] == stack.redis_url
    # Checked by value too, whatever a variable is called: no secret reaches a part that does not use it.
    provider_secrets = [*PROVIDER_KEYS.values(), ANTHROPIC_KEY, str(key_file)]
    control_secrets = [*TOKENS.values(), *ALERTS.values()]
    assert _holding(env["engine"], provider_secrets + list(UNRELATED.values())) == []
    assert _holding(env["proxy"], control_secrets + list(UNRELATED.values())) == []
    assert _holding(env["sim"], provider_secrets + control_secrets + list(UNRELATED.values())) == []
    # And each gets the secrets it does use.
    assert {k: env["proxy"][k] for k in PROVIDER_KEYS} == PROVIDER_KEYS
    assert env["proxy"]["ANTHROPIC_API_KEY_FILE"] == str(key_file)
    assert {k: env["engine"][k] for k in (*TOKENS, *ALERTS)} == {**TOKENS, **ALERTS}
    # The decision-id key `symphony up` made: the proxy's alone.
    decision_key = (stack.var_dir / "decision-key").read_text().strip()
    assert env["proxy"]["DECISION_KEY"] == decision_key
    assert _holding(env["engine"], [decision_key]) == _holding(env["sim"], [decision_key]) == []
    # The dispatcher's token `symphony up` made: the scheduler's, which sends jobs, and the proxy's, which
    # checks it; the scheduler holds no other secret.
    dispatcher_token = (stack.var_dir / "dispatcher-token").read_text().strip()
    assert env["proxy"]["DISPATCHER_TOKEN"] == env["scheduler"]["DISPATCHER_TOKEN"] == dispatcher_token
    assert _holding(env["engine"], [dispatcher_token]) == _holding(env["sim"], [dispatcher_token]) == []
    others = [*provider_secrets, *control_secrets, decision_key, *UNRELATED.values()]
    assert _holding(env["scheduler"], others) == []
    # The spans token `symphony up` made: the proxy posts spans with it, the engine checks it.
    spans_token = (stack.var_dir / "spans-token").read_text().strip()
    assert env["proxy"]["SPANS_TOKEN"] == env["engine"]["SPANS_TOKEN"] == spans_token
    assert _holding(env["sim"], [spans_token]) == _holding(env["scheduler"], [spans_token]) == []


def _holding(environ: dict[str, str], secrets: list[str]) -> list[str]:
    return [name for name, value in environ.items() if any(secret in value for secret in secrets)]


# --- giving up on a part that cannot stay up ---------------------------------------------------------------


def test_a_part_that_cannot_stay_up_stops_the_stack_with_its_log_named(tmp_path: Path) -> None:
    stack = stack_env(tmp_path)
    log = tmp_path / "up.log"
    with symphony_up(stack) as up:
        # The proxy in a crash loop: killed as soon as it is up, and again after each restart. The default
        # policy restarts it five times (0.5 + 1 + 2 + 4 + 8 s of backoff), then gives up on the sixth death.
        proxy = part_pids(up.pid)["proxy"]
        for _ in range(RESTARTS_PER_WINDOW):
            os.kill(proxy, signal.SIGKILL)
            proxy = wait_for_new_pid(up.pid, "proxy", proxy, timeout=30)
        os.kill(proxy, signal.SIGKILL)
        code = up.wait(timeout=60)
        said = log.read_text()
    assert code == 1, said
    proxy_log = stack.var_dir / "logs" / "proxy.log"
    restarts = re.findall(
        rf"proxy    was killed by SIGKILL; restart (\d) of 5 allowed within 300s, in (\d+(?:\.\d+)?)s "
        rf"\(log {re.escape(str(proxy_log))}\)",
        said,
    )
    assert restarts == [("1", "0.5"), ("2", "1"), ("3", "2"), ("4", "4"), ("5", "8")]
    assert (
        "symphony: proxy was killed by SIGKILL and cannot stay up (more than 5 restarts within 300s): "
        f"giving up and stopping the stack; see {proxy_log}" in said
    )
    assert (
        said.index("stopping engine") < said.index("stopping sim") < said.index("stopping the bundled Redis")
    )
    deadline = time.monotonic() + 10
    while processes_of(stack.var_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of(stack.var_dir) == []
    assert not answers(stack.redis_url)


def test_the_proxy_gets_the_keys_of_the_users_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = json.loads((Path(__file__).parents[2] / "policies" / "catalog.v1.json").read_text())
    catalog = json.loads(json.dumps(bundled))
    model = {"m": {"input_per_mtok": 0, "output_per_mtok": 0}}
    catalog["providers"]["relay"] = {
        "base_url": "https://relay.example/v1",
        "key_env": "RELAY_API_KEY",
        "wire": "openai",
        "models": model,
    }
    catalog["providers"]["ollama"] = {
        "base_url": "http://127.0.0.1:11434/v1",
        "key_env": "",
        "wire": "openai",
        "models": model,
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    monkeypatch.setenv("CATALOG_FILE", str(path))
    monkeypatch.setenv("RELAY_API_KEY", "relay-secret-0123456789")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-0123456789")
    monkeypatch.delenv("SIMULATED_PROVIDERS", raising=False)
    stack = Stack(Settings())
    proxy, engine = stack._child_env("proxy"), stack._child_env("engine")
    assert proxy["RELAY_API_KEY"] == "relay-secret-0123456789"
    assert "RELAY_API_KEY" not in engine and "RELAY_API_KEY" not in stack._child_env("sim")
    # The simulator stands in for the bundled providers without a key, never for one of one's own.
    assert set(proxy["SIMULATED_PROVIDERS"].split(",")) == set(bundled["providers"]) - {"openai"}
    Settings(simulated_providers=proxy["SIMULATED_PROVIDERS"])  # a value the proxy starts with
