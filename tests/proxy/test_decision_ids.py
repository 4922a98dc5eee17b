"""Decision ids: the tag is the documented HMAC, byte for byte, so replicas of different versions
(a rolling deploy) accept each other's ids."""

from __future__ import annotations

import base64
import hashlib
import hmac

from proxy.decision_ids import DecisionIds, well_formed

KEY = b"a decision key of 32 bytes long!"
TIMES_MS = [0, 1_764_547_200_123, 2**48 - 1]


def documented_tag(ulid: str, app: str) -> str:
    """The first 16 base32 characters of HMAC-SHA256 over the ULID and the app, lower case."""
    digest = hmac.new(KEY, ulid.encode() + b"\0" + app.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:16].lower()


def test_the_tag_is_the_documented_hmac() -> None:
    ids = DecisionIds(KEY)
    for ts in TIMES_MS:
        for app in ("billing", "search", "ünïcode app"):
            decision_id = ids.issue(ts, app)
            ulid, tag = decision_id.split("-")
            assert well_formed(decision_id)
            assert tag == documented_tag(ulid, app)
            assert ids.issued_to(decision_id, app)
            assert not ids.issued_to(decision_id, app + "x")
            assert not ids.issued_to(f"{ulid}-{documented_tag(ulid, app + 'x')}", app)
