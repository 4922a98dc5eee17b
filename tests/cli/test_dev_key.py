"""The development key: made once, kept owner-only in var/dev-key, reused while valid."""

from __future__ import annotations

from pathlib import Path

import redis

from cli.dev_key import DEV_APP, ensure_dev_key
from symphony.app_keys import load_key, revoke_key, split_key
from symphony.secret_files import read_secret


def test_dev_key_is_made_once_kept_0600_and_replaced_when_revoked(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "var" / "dev-key"
    assert read_secret(path) is None
    key, created = ensure_dev_key(redis_client, path, 1)
    assert created and read_secret(path) == key and path.stat().st_mode & 0o777 == 0o600
    prefix = split_key(key)[0]  # type: ignore[index]
    assert load_key(redis_client, prefix).app == DEV_APP  # type: ignore[union-attr]
    assert ensure_dev_key(redis_client, path, 2) == (key, False)
    revoke_key(redis_client, prefix, 3)
    replaced, created = ensure_dev_key(redis_client, path, 4)
    assert created and replaced != key and read_secret(path) == replaced
    path.write_text("garbage")
    path.chmod(0o644)
    fresh, created = ensure_dev_key(redis_client, path, 5)
    assert created and path.stat().st_mode & 0o777 == 0o600 and read_secret(path) == fresh
