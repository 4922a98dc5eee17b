"""One-line secret files (the development key, control-plane tokens): read them, write them 0600."""

from __future__ import annotations

import os
from pathlib import Path


def read_secret(path: Path) -> str | None:
    """The secret in ``path``, None when there is no such file (or it is empty or unreadable)."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by its owner only (0600), whatever was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secret + "\n").encode())
    finally:
        os.close(fd)
