"""The development key: an app key for the app ``dev`` that `symphony up` makes for local use.

`symphony up` creates it once and prints it once, and keeps it in ``var/dev-key``
(mode 0600), where the demo and `symphony load` find it. A later `symphony up`
reuses the key in that file while Redis still knows it (and it is not revoked),
and says only where it is.
"""

from __future__ import annotations

from pathlib import Path

import redis

from symphony.app_keys import AppKey, create_key, load_key, matches, split_key
from symphony.secret_files import read_secret, write_secret

DEV_APP = "dev"


def ensure_dev_key(client: redis.Redis, path: Path, now_ms: int) -> tuple[str, bool]:
    """The development key and whether it was created now (then it is also written to ``path``)."""
    current = read_secret(path)
    parts = split_key(current) if current else None
    if parts is not None:
        record = load_key(client, parts[0])
        if record is not None and record.revoked_ms is None and matches(record, parts[1]):
            return parts[1], False
    key, _ = create_key(client, AppKey(prefix="", app=DEV_APP, created_ms=now_ms))
    write_secret(path, key)
    return key, True
