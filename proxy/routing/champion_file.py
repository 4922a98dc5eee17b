"""The champion policy file, served again within a second of a change, without a restart.

Promotion is a pull request that changes ``POLICY_FILE``; merging it (or reverting it) and
updating the deployed checkout changes the file under every replica. A task checks the
file's size and modification time every ``interval_s`` and, when they change, loads and
validates it (``symphony.catalog.load_policy``) and hands the new champion to
``on_change``. A file that does not load (half written, invalid, an arm not in the
catalog) is said once and the champion being served keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from proxy.periodic import Periodic
from symphony.catalog import Catalog, load_policy
from symphony.serving import ChampionPolicy

log = logging.getLogger(__name__)


class ChampionFile:
    def __init__(
        self,
        path: Path,
        catalog: Catalog,
        on_change: Callable[[ChampionPolicy], None],
        *,
        interval_s: float = 1.0,
    ) -> None:
        self._path = path
        self._catalog = catalog
        self._on_change = on_change
        self._seen = self._stamp()
        self._poll = Periodic("symphony-champion-file", interval_s, self._check)

    def start(self) -> None:
        self._poll.start()

    async def close(self) -> None:
        await self._poll.close()

    def check(self) -> None:
        """Load the file if it changed since the last look; serve it if it is valid."""
        stamp = self._stamp()
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            champion = ChampionPolicy(load_policy(self._path, self._catalog))
        except (OSError, ValueError) as exc:
            log.warning(
                "champion policy %s did not load (%s); the current champion keeps serving", self._path, exc
            )
            return
        log.warning("champion policy %s changed: serving version %s", self._path, champion.version)
        self._on_change(champion)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def _check(self) -> None:
        self.check()
