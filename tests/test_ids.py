"""Row ids: time-ordered version-7 UUIDs, never repeated (also across a fork)."""

from __future__ import annotations

import os
import time
import uuid

from omnicanal.db import uuid7

RANDOM_BITS = (1 << 62) - 1


def test_ids_are_version_7_uuids_that_survive_a_round_trip_through_text() -> None:
    made = uuid7()
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    again = uuid.UUID(str(made))
    assert again == made and hash(again) == hash(made)


def test_ids_never_repeat_and_later_milliseconds_sort_later() -> None:
    first = [uuid7() for _ in range(20_000)]
    time.sleep(0.002)
    later = uuid7()
    assert len(set(first)) == len(first)
    assert all(made < later for made in first)


def test_a_forked_process_makes_ids_its_parent_does_not() -> None:
    uuid7()  # the parent has random bytes buffered
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(writer, b"".join(uuid7().bytes for _ in range(50)))
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    # compare the random bits alone: the two processes may well run in different milliseconds
    from_child = {int.from_bytes(data[start : start + 16], "big") & RANDOM_BITS for start in range(0, len(data), 16)}
    from_parent = {uuid7().int & RANDOM_BITS for _ in range(50)}
    assert len(from_child) == 50
    assert not from_child & from_parent


def test_random_bits_are_as_many_as_asked_and_spread_over_all_of_them() -> None:
    from omnicanal.ids import random_bits

    draws = [random_bits(30) for _ in range(4000)]
    assert all(0 <= draw < 1 << 30 for draw in draws) and len(set(draws)) > 3990
    assert all(any(draw >> bit & 1 for draw in draws) for bit in range(30))  # the top bits too
    for wrong in (0, 81):
        try:
            random_bits(wrong)
        except ValueError as refused:
            assert "1 to 80 bits" in str(refused)
        else:
            raise AssertionError(f"random_bits({wrong}) was not refused")
