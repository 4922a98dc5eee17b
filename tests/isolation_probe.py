"""Run only by tests/system/test_isolation.py, in a pytest whose parent environment holds a provider key
and AUTH_DISABLED: neither may reach the test's settings, nor a proxy process a test starts the
way the stack helpers do (copying ``os.environ``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from symphony.catalog import load_catalog
from symphony.health import answers_as
from symphony.redis_server import RedisServer, free_port
from symphony.settings import Settings, load_provider_keys
from tests.engineutil import REPO

LEAKED = ("OPENAI_API_KEY", "AUTH_DISABLED", "TRAFFIC_SPLIT")


def test_the_parent_environment_does_not_reach_a_test_or_its_proxy(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    assert not set(LEAKED) & set(os.environ)
    settings = Settings()
    assert not settings.auth_disabled and settings.traffic_split == 0.05
    assert load_provider_keys(load_catalog(), os.environ) == {}
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_server.url, "PROXY_PORT": str(port), "PYTHONPATH": str(REPO)}
    env |= {
        "SIMULATED_PROVIDERS": "all",
        "SIM_URL": f"http://127.0.0.1:{free_port()}",
        "VAR_DIR": str(tmp_path),
    }
    log = tmp_path / "proxy.log"
    with log.open("wb") as out:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "cli", "proxy"], cwd=REPO, env=env, stdout=out, stderr=out
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proxy.poll() is None, log.read_text()
            if answers_as(url, "proxy", timeout=1):
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        names = {
            entry.split(b"=", 1)[0].decode()
            for entry in Path(f"/proc/{proxy.pid}/environ").read_bytes().split(b"\0")
            if entry
        }
        assert not set(LEAKED) & names, names
        # Authentication is on: a request without a key is refused before any provider is called.
        answer = httpx.post(f"{url}/v1/chat/completions", json={"model": "auto", "messages": []}, timeout=10)
        assert answer.status_code == 401, answer.text
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
