"""The control plane's admin boundary: tokens and roles on the engine's HTTP API."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from symphony import engine_client
from tests.engineutil import ADMIN_TOKEN, ANALYST_TOKEN, Engine


def as_role(engine: Engine, token: str | None) -> dict[str, str]:
    return {} if token is None else {"authorization": f"Bearer {token}"}


def test_roles_decide_what_each_caller_may_do(engine: Engine) -> None:
    engine.args = ["--test-faults"]
    engine.start()
    base = engine.bare_url
    assert httpx.get(f"{base}/health").status_code == 200  # open: load balancers ask it
    query = {"sql": "SELECT count() FROM usage"}
    for token, status in ((None, 401), ("wrong", 401), (ANALYST_TOKEN, 200), (ADMIN_TOKEN, 200)):
        answer = httpx.post(f"{base}/query", json=query, headers=as_role(engine, token))
        assert answer.status_code == status, token
        assert ANALYST_TOKEN not in answer.text and ADMIN_TOKEN not in answer.text
    assert httpx.get(f"{base}/metrics", headers=as_role(engine, ANALYST_TOKEN)).status_code == 200
    forbidden = httpx.post(f"{base}/faults", json={"lost_acks": 0}, headers=as_role(engine, ANALYST_TOKEN))
    assert forbidden.status_code == 403 and "analyst role may only read" in forbidden.json()["error"]
    assert (
        httpx.post(f"{base}/faults", json={"lost_acks": 0}, headers=as_role(engine, ADMIN_TOKEN)).status_code
        == 200
    )
    # A token in the URL works for the engine client and never shows in its errors.
    assert engine_client.query(
        f"http://analyst:{ANALYST_TOKEN}@127.0.0.1:{engine.port}", "SELECT 1"
    ).rows == [[1]]


def test_the_engine_will_not_start_an_open_api_without_saying_so(engine: Engine) -> None:
    # No ENGINE_PORT (the fixture's engine picks its port only when it starts): the default will do,
    # since the engine refuses to run before it binds anything.
    dropped = ("ADMIN_TOKEN", "ANALYST_TOKEN", "AUTH_DISABLED", "ENGINE_PORT")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(
        REDIS_URL=engine.redis_url,
        VAR_DIR=str(engine.var_dir),
        CLICKHOUSE_URL=f"chdb://{engine.var_dir / 'chdb'}",
    )
    refused = subprocess.run(
        [sys.executable, "-m", "cli", "engine"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "ADMIN_TOKEN" in refused.stderr and "AUTH_DISABLED=true" in refused.stderr
