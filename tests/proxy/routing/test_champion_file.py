"""The champion file is served again when it changes, and a file that does not load changes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

from proxy.routing.champion_file import ChampionFile
from symphony.catalog import load_catalog
from symphony.serving import ChampionPolicy

CHAMPION_FILE = Path(__file__).parents[3] / "policies" / "champion.json"


def rewrite(path: Path, text: str, tick: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(tick, tick))  # a distinct modification time, however fast the test runs


def test_a_changed_file_is_served_and_a_broken_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "champion.json"
    original = json.loads(CHAMPION_FILE.read_text())
    rewrite(path, json.dumps(original), 1)
    served: list[ChampionPolicy] = []
    watch = ChampionFile(path, load_catalog(), served.append)
    watch.check()
    assert served == []  # unchanged since it was read at start
    rewrite(path, '{"version": "half writ', 2)
    watch.check()
    rewrite(
        path, json.dumps(original | {"tasks": {"chat": {"nobody/nothing": 1.0}}, "version": "bad-arm"}), 3
    )
    watch.check()
    assert served == []  # neither loads: the current champion keeps serving
    rewrite(path, json.dumps(original | {"version": "next"}), 4)
    watch.check()
    assert [champion.version for champion in served] == ["next"]
