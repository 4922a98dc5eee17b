"""The champion policy file, served again within a second of a change, without a restart.

Promotion is a pull request that changes ``POLICY_FILE``; merging it (or reverting it) and
updating the deployed checkout changes the file under every replica. The file is watched
(``proxy.watched_file``): a changed one is loaded and validated (``symphony.catalog.load_policy``,
against the catalog being served, ``catalog``) and handed to ``on_change``. A file that does
not load (half written, invalid, an arm not in the catalog) is said once and the champion
being served keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from proxy.watched_file import WatchedFile
from symphony.catalog import Catalog, load_policy
from symphony.serving import ChampionPolicy

log = logging.getLogger(__name__)


class ChampionFile(WatchedFile[ChampionPolicy]):
    def __init__(
        self,
        path: Path,
        catalog: Catalog,
        on_change: Callable[[ChampionPolicy], None],
        *,
        interval_s: float = 1.0,
    ) -> None:
        self.catalog = catalog  # the catalog being served: the gateway replaces it when it reloads

        def serve(champion: ChampionPolicy) -> None:
            log.warning("champion policy %s changed: serving version %s", path, champion.version)
            on_change(champion)

        super().__init__("champion policy", path, self._read, serve, interval_s=interval_s)

    def _read(self, path: Path) -> ChampionPolicy:
        return ChampionPolicy(load_policy(path, self.catalog))
