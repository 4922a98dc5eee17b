"""The catalog file (``CATALOG_FILE``), served again within a second of a change, without a restart.

The file is watched (``proxy.watched_file``): a changed one is read and checked
(``symphony.catalog.read_catalog``, whose error names each bad entry) and handed to
``on_change`` (the gateway, which builds the adapters and candidate arms once, there, so
no request pays for the change). A file that does not load keeps the catalog being served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from proxy.watched_file import WatchedFile
from symphony.catalog import Catalog, read_catalog

log = logging.getLogger(__name__)


class CatalogFile(WatchedFile[Catalog]):
    def __init__(self, path: Path, on_change: Callable[[Catalog], None], *, interval_s: float = 1.0) -> None:
        def serve(catalog: Catalog) -> None:
            log.warning(
                "catalog %s changed: serving version %s (%d models)", path, catalog.version, len(catalog.arms)
            )
            on_change(catalog)

        super().__init__("catalog", path, read_catalog, serve, interval_s=interval_s)
