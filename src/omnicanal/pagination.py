"""Opaque cursors: the client hands back what we gave it, and cannot forge a bad query."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

import orjson

from omnicanal.errors import ValidationFailed

MAX_LIMIT = 200


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, size: int) -> list[Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
    if not isinstance(values, list) or len(values) != size:
        raise ValidationFailed.on_field("cursor", "is not a cursor this API returned")
    return values


def decode_time_id_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """A keyset cursor of (time, id), as pages ordered by a timestamp and then the row id hand out."""
    after = decode_cursor(cursor, size=2)
    if after is None:
        return None
    try:
        when, last_id = datetime.fromisoformat(str(after[0])), uuid.UUID(str(after[1]))
    except ValueError:
        raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
    if when.tzinfo is None:  # every cursor handed out carries one; stored times cannot be compared without
        raise ValidationFailed.on_field("cursor", "is not a cursor this API returned")
    return when, last_id


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed.on_field("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit
