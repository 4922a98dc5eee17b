"""The user's own catalog: a provider of one's own, added at run time, served without a restart.

A second simulator on another port stands in for an OpenAI-compatible server of one's
own (a vLLM, an Ollama, a relay): it accepts only the relay's key, so an answer from it
proves the key named by the entry's ``key_env`` travelled. The proxy reads the catalog
from ``CATALOG_FILE`` and serves the changed file within a second or so.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from simulator import BackgroundServer
from simulator import create_app as create_sim_app
from symphony.catalog import CATALOG_FILE, read_catalog
from symphony.clock import RealClock
from symphony.redis_server import RedisServer
from tests.proxy_stack import CATALOG, CountingApp, ProxyStack

RELAY_KEY = "relay-secret-0123456789"
RELAY_ARM = "relay/gpt-4o-mini"


def write_catalog(path: Path, data: dict[str, Any], tick: int) -> None:
    path.write_text(json.dumps(data))
    os.utime(path, ns=(tick * 10**9, tick * 10**9))  # a distinct modification time, however fast


def with_relay(base_url: str) -> dict[str, Any]:
    """The bundled catalog plus a provider of one's own, `relay`, at ``base_url``."""
    data: dict[str, Any] = json.loads(CATALOG_FILE.read_text())
    data["version"] = "with-relay"
    data["providers"]["relay"] = {
        "base_url": base_url,
        "key_env": "RELAY_API_KEY",
        "wire": "openai",
        "models": {"gpt-4o-mini": {"input_per_mtok": 0.1, "output_per_mtok": 0.2, "capabilities": ["tools"]}},
    }
    return data


@pytest.fixture
def relay() -> Iterator[tuple[BackgroundServer, CountingApp]]:
    """The simulator on a port of its own, taking only the relay's key at its OpenAI paths."""
    app = CountingApp(create_sim_app(RealClock(), CATALOG, seed=5, keys={"openai": RELAY_KEY}))
    server = BackgroundServer(app).start()
    try:
        yield server, app
    finally:
        server.stop()


def wait_for_model(stack: ProxyStack, model: str, present: bool = True, timeout_s: float = 6.0) -> float:
    """Seconds until ``GET /v1/models`` lists (or no longer lists) ``model``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        listed = httpx.get(f"{stack.base_url}/models", headers=stack.auth).json()["data"]
        if any(entry["id"] == model for entry in listed) == present:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{model} {'never appeared' if present else 'never left'} in {timeout_s} s")


def test_an_own_provider_added_at_run_time_is_served_without_a_restart(
    redis_server: RedisServer, tmp_path: Path, relay: tuple[BackgroundServer, CountingApp]
) -> None:
    server, relay_app = relay
    path = tmp_path / "catalog.json"
    write_catalog(path, json.loads(CATALOG_FILE.read_text()), 1)
    with ProxyStack(
        redis_server, catalog=read_catalog(path), catalog_file=path, environ={"RELAY_API_KEY": RELAY_KEY}
    ) as stack:
        client = stack.openai()
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=RELAY_ARM, messages=[{"role": "user", "content": "hi"}])

        write_catalog(path, with_relay(f"{server.url}/openai/v1"), 2)
        assert wait_for_model(stack, RELAY_ARM) < 3.0  # polled every second

        raw = client.chat.completions.with_raw_response.create(
            model=RELAY_ARM, messages=[{"role": "user", "content": "hello relay"}], max_tokens=20
        )
        assert raw.headers["x-symphony-arm"] == RELAY_ARM
        assert raw.parse().choices[0].message.content
        assert relay_app.answers == {("openai", 200): 1}  # answered by the relay, with its key
        assert stack.sim_app.total() == 0  # the stack's simulator saw nothing

        # A broken catalog changes nothing: the relay keeps serving.
        broken = with_relay(f"{server.url}/openai/v1")
        broken["providers"]["relay"]["models"]["gpt-4o-mini"]["input_per_mtok"] = -1
        write_catalog(path, broken, 3)
        time.sleep(1.5)
        answer = client.chat.completions.create(
            model=RELAY_ARM, messages=[{"role": "user", "content": "still there?"}], max_tokens=20
        )
        assert answer.choices[0].message.content
        assert relay_app.answers == {("openai", 200): 2}

        # The entry removed: the model is gone again, no restart.
        write_catalog(path, json.loads(CATALOG_FILE.read_text()), 4)
        wait_for_model(stack, RELAY_ARM, present=False)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=RELAY_ARM, messages=[{"role": "user", "content": "hi"}])
    events = stack.events()
    served = [d.served_by for d in events.decisions]
    assert served.count(RELAY_ARM) == 2
    relay_usage = [u for u in events.usages if u.provider == "relay"]
    # Priced at the catalog's own prices for the relay: 0.1 and 0.2 USD per million tokens.
    for usage in relay_usage:
        expected = (usage.input_tokens * 0.1 + usage.output_tokens * 0.2) / 1_000_000
        assert usage.cost_usd == pytest.approx(expected)
    assert len(relay_usage) == 2


def test_an_own_provider_without_its_key_is_no_candidate(
    redis_server: RedisServer, tmp_path: Path, relay: tuple[BackgroundServer, CountingApp]
) -> None:
    server, relay_app = relay
    path = tmp_path / "catalog.json"
    write_catalog(path, with_relay(f"{server.url}/openai/v1"), 1)
    with ProxyStack(redis_server, catalog=read_catalog(path), catalog_file=path, environ={}) as stack:
        response = httpx.post(
            f"{stack.base_url}/chat/completions",
            headers=stack.auth,
            json={"model": RELAY_ARM, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 404
        assert "no key" in response.json()["error"]["message"]
    assert relay_app.total() == 0


def test_the_champion_may_name_an_arm_the_reloaded_catalog_added(
    redis_server: RedisServer, tmp_path: Path, relay: tuple[BackgroundServer, CountingApp]
) -> None:
    server, _ = relay
    catalog_path, champion_path = tmp_path / "catalog.json", tmp_path / "champion.json"
    write_catalog(catalog_path, json.loads(CATALOG_FILE.read_text()), 1)
    champion = json.loads((CATALOG_FILE.parent / "champion.json").read_text())
    write_catalog(champion_path, champion, 1)
    with ProxyStack(
        redis_server,
        catalog=read_catalog(catalog_path),
        catalog_file=catalog_path,
        policy_file=champion_path,
        environ={"RELAY_API_KEY": RELAY_KEY},
        traffic_split=0.0,
    ) as stack:
        write_catalog(catalog_path, with_relay(f"{server.url}/openai/v1"), 2)
        wait_for_model(stack, RELAY_ARM)
        # A champion that rates the new arm: valid only against the catalog served now.
        champion["version"] = "rates-relay"
        champion["tasks"]["chat"] = {RELAY_ARM: 1.0, "openai/gpt-4o-mini": 0.2}
        write_catalog(champion_path, champion, 2)
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        deadline = time.monotonic() + 6
        decision: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = httpx.post(f"{stack.base_url}/route/execute", headers=stack.auth, json=body, timeout=30)
            decision = answer.json()["decision"]
            if decision["policy_version"] == "rates-relay":
                break
            time.sleep(0.2)
        assert decision["policy_version"] == "rates-relay"
    last = [d for d in stack.events().decisions if d.policy_version == "rates-relay"][-1]
    shares = dict(zip(last.candidates, last.probabilities, strict=True))
    # The champion's utility 1.0 for the new arm against 0.2 and 0 for the others: it gets the largest share.
    assert max(shares, key=shares.__getitem__) == RELAY_ARM and shares[RELAY_ARM] > 0.5
