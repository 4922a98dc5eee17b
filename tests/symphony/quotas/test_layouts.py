"""A reservation's layout (``symphony.quotas.store.layout_of``): one per set of limits, however asked for.

Batches group reservations by their layout, so equal limits must give the very same layout whether a
caller keeps its tuple (the quota gate, app keys) or builds one per call; and a layout found by the
identity of a tuple must be that tuple's, even after other tuples were freed and their ids reused.
"""

from __future__ import annotations

from symphony.quotas import ROLLING, Limit
from symphony.quotas.store import layout_of

LIMITS = (
    Limit("grok", "requests", ROLLING["minute"], 10),
    Limit("grok", "tokens", ROLLING["day"], 1_000, "grok-3"),
)


def test_equal_limits_share_one_layout_whatever_tuple_holds_them() -> None:
    kept = layout_of(LIMITS)
    assert layout_of(LIMITS) is kept
    assert layout_of(tuple(list(LIMITS))) is kept  # a tuple of its own, equal
    assert layout_of(LIMITS[:1]) is not kept
    assert layout_of(LIMITS[:1]).limits == LIMITS[:1]


def test_a_tuple_gets_its_own_layout_when_freed_tuples_left_their_ids_behind() -> None:
    # Each tuple is freed once asked for, so CPython hands its memory (and id) to a later one.
    for cap in range(1, 300):
        limits = (Limit("grok", "requests", ROLLING["minute"], cap),)
        assert layout_of(limits).limits == limits
