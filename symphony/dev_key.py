"""The development key: an app key for the app ``dev`` that `symphony up` makes for local use.

`symphony up` creates it once and prints it once, and keeps it in ``var/dev-key``
(mode 0600), where the demo and `symphony load` find it. A later `symphony up`
reuses the key in that file while Redis still knows it (and it is not revoked),
and says only where it is.
"""

from __future__ import annotations

import os
from pathlib import Path

import redis

from symphony.app_keys import AppKey, create_key, load_key, matches, split_key

DEV_APP = "dev"


def read_dev_key(path: Path) -> str | None:
    """The key in ``path``, None when there is no such file."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_dev_key(client: redis.Redis, path: Path, now_ms: int) -> tuple[str, bool]:
    """The development key and whether it was created now (then it is also written to ``path``)."""
    current = read_dev_key(path)
    parts = split_key(current) if current else None
    if parts is not None:
        record = load_key(client, parts[0])
        if record is not None and record.revoked_ms is None and matches(record, parts[1]):
            return parts[1], False
    key, _ = create_key(client, AppKey(prefix="", app=DEV_APP, created_ms=now_ms))
    write_secret(path, key)
    return key, True


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by its owner only (0600), whatever was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
