"""Decision ids that say who may score them: a ULID and a tag only the proxy can make.

A decision id is ``<ULID>-<tag>``. The ULID carries the decision's event time; the tag is
the first 16 base32 characters (80 bits) of HMAC-SHA256 over the ULID and the app that
made the decision, under ``DECISION_KEY``, which every replica shares. ``/v1/feedback``
recomputes the tag for the caller's app, so an id the proxy never issued and an id issued
to another app are both unknown to the caller (one 404 for both: telling them apart would
confirm that another app's decision exists). No lookup, no Redis round trip, on either side.

>>> ids = DecisionIds(b"k" * 32)
>>> decision_id = ids.issue(1_764_547_200_000, "billing")
>>> ids.issued_to(decision_id, "billing"), ids.issued_to(decision_id, "search")
(True, False)
>>> well_formed("hello"), well_formed(decision_id)
(False, True)
"""

from __future__ import annotations

import base64
import hmac
import re

from symphony.events import new_id

TAG_CHARS = 16
_TAG_BYTES = TAG_CHARS * 5 // 8
_WELL_FORMED = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}-[a-z2-7]{16}")


class DecisionIds:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the decision key must be at least 16 bytes")
        self._key = key

    def issue(self, ts_ms: int, app: str) -> str:
        """A new decision's id: its event time and a tag binding it to ``app``."""
        ulid = new_id(ts_ms)
        return f"{ulid}-{self._tag(ulid, app)}"

    def issued_to(self, decision_id: str, app: str) -> bool:
        """Whether this proxy (any replica with the same key) issued ``decision_id`` to ``app``."""
        ulid, _, tag = decision_id.partition("-")
        return well_formed(decision_id) and hmac.compare_digest(tag, self._tag(ulid, app))

    def _tag(self, ulid: str, app: str) -> str:
        # hmac.digest is OpenSSL's one-shot HMAC (hmac.new builds it in Python), and base32 writes
        # each 5 bytes as 8 characters, so the digest's first 10 bytes are the tag's 16: 11 -> 6 us.
        digest = hmac.digest(self._key, f"{ulid}\0{app}".encode(), "sha256")
        return base64.b32encode(digest[:_TAG_BYTES]).decode("ascii").lower()


def well_formed(decision_id: str) -> bool:
    """The shape of an id ``DecisionIds.issue`` makes (a ULID, '-', 16 base32 characters)."""
    return _WELL_FORMED.fullmatch(decision_id) is not None
