"""A stack of a command's own: fresh state, its own bundled Redis, every part on a free port.

For the commands that run a whole experiment or gate (``learner-week``, ``perf-run``): they
run beside a developer's stack, never on it, and always from a clean slate.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cli.supervisor import Stack, running_stack
from symphony.redis_server import free_ports
from symphony.settings import Settings, load_settings


@contextmanager
def own_stack(
    var_dir: Path, *, say: Callable[[str], None], speed: float = 1.0, start_ms: int | None = None
) -> Iterator[tuple[Settings, Stack]]:
    """The whole stack on the simulator with its state in ``var_dir`` (emptied first); the stack
    starts its own bundled Redis (``stack.redis``), as ``symphony up`` does when none answers."""
    shutil.rmtree(var_dir, ignore_errors=True)
    settings = _own_settings(var_dir)
    with running_stack(settings, speed=speed, start_ms=start_ms, say=say) as stack:
        yield settings, stack


def _own_settings(var_dir: Path) -> Settings:
    """The user's settings with a Redis of the stack's own, its var dir, embedded ClickHouse, free ports.

    Set in this process's environment, which is where ``running_stack`` hands settings to the
    parts it starts (each receives its row of ``cli.child_env``): the command owns its process.
    """
    redis_port, proxy_port, sim_port, engine_port, scheduler_port = free_ports(5)
    os.environ.update(
        {
            "VAR_DIR": str(var_dir),
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "CLICKHOUSE_URL": "",
            "PROXY_PORT": str(proxy_port),
            "SIM_PORT": str(sim_port),
            "ENGINE_PORT": str(engine_port),
            "SCHEDULER_PORT": str(scheduler_port),
            "SIM_URL": "",
            "SIMULATED_PROVIDERS": "all",
        }
    )
    return load_settings()
