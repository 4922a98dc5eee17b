"""Event ids are ULIDs as the ULID library reads them: the event time in their first 48 bits."""

from __future__ import annotations

import os

from ulid import ULID

from symphony.events import new_id, ulid_text

TIMES_MS = [0, 1, 1_764_547_200_123, 2**48 - 1]


def test_an_id_is_a_ulid_holding_its_event_time() -> None:
    for ts in TIMES_MS:
        made = new_id(ts)
        parsed = ULID.from_str(made)  # the library's own Crockford decoding
        assert len(made) == 26 and str(parsed) == made
        assert parsed.milliseconds == ts


def test_ids_sort_by_time_and_never_repeat() -> None:
    made = [new_id(ts) for ts in TIMES_MS for _ in range(2_000)]
    assert len(set(made)) == len(made)
    by_time = [ULID.from_str(i).milliseconds for i in sorted(made)]
    assert by_time == sorted(by_time)
    # 80 random bits each: every character position but the time's varies across ids of one ms.
    same_ms = [i for i in made if ULID.from_str(i).milliseconds == TIMES_MS[2]]
    assert all(len({i[pos] for i in same_ms}) > 1 for pos in range(10, 26))


def test_the_random_part_is_written_as_the_library_writes_it() -> None:
    for randomness in (bytes(10), b"\xff" * 10, bytes(range(1, 11)), b"\x80" + bytes(8) + b"\x01"):
        for ts in TIMES_MS:
            expected = str(ULID.from_bytes(ts.to_bytes(6, "big") + randomness))
            assert ulid_text(ts, int.from_bytes(randomness, "big")) == expected


def test_a_forked_child_draws_ids_of_its_own() -> None:
    new_id(0)  # the parent holds random parts drawn before the fork
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        os.write(write, "".join(new_id(0) for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(child, 0)
    in_child = {text[at : at + 26] for at in range(0, len(text), 26)}
    in_parent = {new_id(0) for _ in range(100)}
    assert len(in_child) == 100 and not in_child & in_parent
