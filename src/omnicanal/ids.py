"""Row ids: time-ordered UUIDs (RFC 9562 version 7), made cheaply enough for batch ingest."""

from __future__ import annotations

import os
import threading
import time
import uuid

_RANDOM_CHUNK = 4096
_random = threading.local()


def _forget_random_bytes() -> None:
    """A forked child must not hand out the random bytes its parent hands out."""
    global _random
    _random = threading.local()


os.register_at_fork(after_in_child=_forget_random_bytes)
_new_uuid = object.__new__
# the slots' own setters: a quarter cheaper than object.__setattr__ by name (UUID refuses plain assignment)
_set_int = uuid.UUID.__dict__["int"].__set__
_set_is_safe = uuid.UUID.__dict__["is_safe"].__set__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def _random_80_bits() -> int:
    """10 bytes from the OS's generator, read in 4 KiB chunks: one system call per ~400 ids, not per id."""
    buffer: bytes | None = getattr(_random, "buffer", None)
    position: int = getattr(_random, "position", _RANDOM_CHUNK)
    if buffer is None or position + 10 > _RANDOM_CHUNK:
        buffer = _random.buffer = os.urandom(_RANDOM_CHUNK)
        position = 0
    _random.position = position + 10
    return int.from_bytes(buffer[position : position + 10], "big")


def random_bits(count: int) -> int:
    """``count`` (at most 80) bits from the OS's generator, through the ids' buffer: no system call each time."""
    if not 0 < count <= 80:
        raise ValueError(f"random_bits gives 1 to 80 bits, not {count}")
    return _random_80_bits() >> (80 - count)


def uuid_of_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` without the argument checks, for values valid by construction."""
    made = _new_uuid(uuid.UUID)
    _set_int(made, value)
    _set_is_safe(made, _SAFE_UNKNOWN)
    return made


def uuid7() -> uuid.UUID:
    """Time-ordered UUID (RFC 9562 version 7): new rows land at the end of the index.

    Ingest makes about two per event (bench/README.md, B2): the random bytes come from a buffer and the
    UUID is built without ``UUID.__init__``'s checks, at about half the cost.
    """
    millis = time.time_ns() // 1_000_000
    rand = _random_80_bits()
    return uuid_of_int(
        ((millis & 0xFFFF_FFFF_FFFF) << 80)
        | (0x7 << 76)
        | (((rand >> 62) & 0xFFF) << 64)
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )


def as_uuid(value: object) -> uuid.UUID:
    """A UUID given as one or as its text (domain event payloads may carry either)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
