"""No secret leaves the proxy: after a load run with known provider and app keys, nothing holds either.

Every provider gets a known key that really travels to the simulator, which accepts
only that key (so a 200 proves it arrived). Venice's simulator expects another
key and answers the proxy's with a 401 that echoes it masked, as OpenAI does.
Then the proxy's log file, every Redis key and value, every ClickHouse table (the
engine ingests the run, and the proxy's spans), every file under the engine's data
directory (evidence bundles of a decision the mis-keyed provider refused, and of one
served, included; the proxy keeps the refused exchanges, keys in their headers, in its
evidence ring in Redis), and every error body the proxy answered are searched for each key,
its masked echo and its middle part.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from cli.load import LoadConfig, run_load
from simulator.wire import masked
from symphony import engine_client
from symphony.redis_server import RedisServer
from tests.engineutil import SPANS_TOKEN, Engine
from tests.proxy_stack import CATALOG, ProxyStack, bearer

MISKEYED = "venice"  # its simulator expects another key: the proxy's gets a 401 that echoes it
HI = [{"role": "user", "content": "hi"}]


def provider_keys() -> dict[str, str]:
    return {name: f"sk-{name}-{secrets.token_urlsafe(24)}" for name in CATALOG.providers}


def fragments(key: str) -> list[bytes]:
    """What would betray ``key``: itself, the echo a provider makes of it, its middle."""
    return [key.encode(), masked(key).encode(), key[8:-4].encode()]


def redis_dump(client: Any) -> bytes:
    """Every key and value in Redis (a ``redis.Redis`` answering bytes), streams included, as one blob."""
    parts: list[bytes] = []
    for key in client.scan_iter():
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"hash":
            parts += [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == b"set":
            parts += list(client.smembers(key))
        elif kind == b"list":
            parts += client.lrange(key, 0, -1)
        elif kind == b"zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            parts += [v for _, fields in client.xrange(key) for v in (*fields.keys(), *fields.values())]
    return b"\n".join(parts)


def clickhouse_dump(engine: Engine) -> tuple[bytes, int]:
    """Every row of every table, as text, and how many rows that was."""
    tables = engine_client.query(
        engine.url, "SELECT name FROM system.tables WHERE database = currentDatabase()"
    )
    text, rows = [], 0
    for (table,) in tables.rows:
        result = engine_client.query(engine.url, f"SELECT * FROM `{table}`", timeout=30)
        rows += len(result.rows)
        text.append(repr(result.rows))
    return "\n".join(text).encode(), rows


def files_dump(root: Path) -> bytes:
    return b"\n".join(path.read_bytes() for path in root.rglob("*") if path.is_file())


def capture_evidence(engine: Engine, status: str) -> str:
    """The evidence bundle of a decision with an attempt of ``status`` (the engine writes it)."""
    sql = f"SELECT decision_id FROM usage FINAL WHERE status = '{status}' ORDER BY ts LIMIT 1"
    [[decision_id]] = engine_client.query(engine.url, sql).rows
    outcome = engine_client.capture_evidence(engine.url, {"decision_id": decision_id})
    return str(outcome["bundle"])


@pytest.fixture
def proxy_log(tmp_path: Path) -> Iterator[Path]:
    """The proxy's logs, as an operator would keep them: DEBUG for the proxy, INFO for the rest."""
    path = tmp_path / "proxy.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root, proxy = logging.getLogger(), logging.getLogger("proxy")
    levels = (root.level, proxy.level)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    proxy.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(levels[0])
        proxy.setLevel(levels[1])


def probe_error_bodies(stack: ProxyStack, keys: dict[str, str]) -> list[httpx.Response]:
    """Requests that end in errors: the mis-keyed provider in each format, provider keys as app keys."""
    answers = [
        httpx.post(
            f"{stack.base_url}/chat/completions",
            json={"model": f"{MISKEYED}/llama-3.3-70b", "messages": HI},
            headers=stack.auth,
        ),
        httpx.post(
            f"{stack.url}/v1/messages",
            json={"model": "llama-3.3-70b", "max_tokens": 8, "messages": HI},
            headers={"x-api-key": stack.key, "anthropic-version": "2023-06-01"},
        ),
        httpx.post(
            f"{stack.base_url}/route/execute",
            json={"messages": HI, "overrides": {"provider": MISKEYED}},
            headers=stack.auth,
        ),
    ]
    for key in keys.values():  # a provider key pasted where the app key goes
        answers.append(httpx.get(f"{stack.base_url}/models", headers=bearer(key)))
        answers.append(httpx.post(f"{stack.url}/v1/messages", json={}, headers={"x-api-key": key}))
    wrong_secret = stack.key[:-6] + "Zz9_Zz"
    answers.append(httpx.post(f"{stack.base_url}/chat/completions", json={}, headers=bearer(wrong_secret)))
    return answers


def test_no_key_appears_in_logs_redis_clickhouse_files_or_error_bodies(
    redis_server: RedisServer, engine: Engine, proxy_log: Path
) -> None:
    keys = provider_keys()
    sim_keys = {**keys, MISKEYED: f"sk-expected-{secrets.token_urlsafe(24)}"}
    engine.start()
    # The mis-keyed provider never cools (breaker_failures), so every request pinned to it reaches it.
    with ProxyStack(
        redis_server,
        keys=keys,
        sim_keys=sim_keys,
        app="leaky",
        auth_failures_per_minute=1000,
        breaker_failures=10**6,
        spans_token=SecretStr(SPANS_TOKEN),  # spans to the engine's otel_traces, scanned below
        evidence_bundles=True,  # failed exchanges into the proxy's evidence ring (Redis), scanned below
        engine_port=engine.port,
    ) as stack:
        errors = probe_error_bodies(stack, keys)
        config = LoadConfig(
            rate=30,
            duration=3,
            tasks={"chat": 1, "code": 1},
            stream_share=0.5,
            inbound="mixed",
            max_tokens=24,
            seed=11,
            api_key=stack.key,
            progress_s=10,
        )
        report = run_load(stack.url, stack.sim.url, config, say=lambda _: None)
        events = stack.events()
        answered = dict(stack.sim_app.answers)
    app_key = stack.key

    assert report.ok == report.sent, report.failed  # the mis-keyed provider is fallen back from
    served = {provider for (provider, status), n in answered.items() if status == 200 and n}
    assert len(served) >= 4, answered  # those keys really travelled: the simulator takes no other
    assert answered.get((MISKEYED, 401), 0) >= 1, answered  # and it echoed the wrong one, masked
    assert [answer.status_code for answer in errors[:3]] == [502, 502, 502]
    assert all(answer.status_code == 401 for answer in errors[3:])
    assert "upstream_auth_error" in errors[0].text

    decisions = len(events.decisions)
    engine_client.wait_for_count(engine.url, "SELECT count() FROM decisions FINAL", decisions, timeout=60)
    engine_client.wait_for_count(
        engine.url, "SELECT count() FROM usage FINAL", len(events.usages), timeout=60
    )
    bundles = [capture_evidence(engine, status) for status in ("error", "ok")]
    ring = redis.Redis.from_url(redis_server.url).lrange("symphony:exchanges", 0, -1)
    assert ring and all(b"[REDACTED:header]" in entry for entry in ring)  # the ring saw the refusals
    assert all(Path(bundle).is_relative_to(engine.var_dir) for bundle in bundles)
    engine_client.wait_for_count(engine.url, "SELECT count() > 0 FROM otel_traces", 1, timeout=30)
    time.sleep(1.0)
    tables, rows = clickhouse_dump(engine)
    assert rows >= decisions + len(events.usages)  # the scan saw the run
    places: dict[str, bytes] = {
        "proxy log": proxy_log.read_bytes(),
        "redis": redis_dump(redis.Redis.from_url(redis_server.url)),
        "clickhouse": tables,
        "engine files": files_dump(engine.var_dir),
        "error bodies": b"\n".join(answer.content for answer in errors),
    }
    assert b"refused Symphony's key" in places["proxy log"]  # the log saw the failure, not the key
    needles: dict[str, list[bytes]] = {name: fragments(key) for name, key in keys.items()}
    needles["app key"] = [app_key.encode(), app_key[len("sk-sym-abcdefgh-") :].encode()]  # whole, secret
    found: list[Any] = [
        (place, name, needle)
        for place, blob in places.items()
        for name, wanted in needles.items()
        for needle in wanted
        if needle in blob
    ]
    assert found == []
