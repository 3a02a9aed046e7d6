"""The event types integrators can subscribe to, how patterns match them, and JSON-safe data."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from omnicanal.errors import ValidationFailed

# What the platform publishes through ``omnicanal.dispatch`` and a webhook can carry.
EVENT_TYPES: tuple[str, ...] = (
    "message.received",
    "message.created",
    "message.sent",
    "message.delivered",
    "message.read",
    "message.failed",
    "note.created",
    "conversation.created",
    "conversation.assigned",
    "conversation.open",
    "conversation.pending",
    "conversation.snoozed",
    "conversation.resolved",
    "conversation.updated",
    "customer.merged",
    "customer.merge_undone",
    "customer.created",
    "customer.updated",
    "consent.changed",
    "customer.erased",
)
TEST_EVENT = "webhook.test"
FAMILIES = frozenset(name.split(".", 1)[0] for name in EVENT_TYPES)
MAX_PATTERNS = 50
_HINT = (
    f"use '*', a family wildcard ({', '.join(sorted(f + '.*' for f in FAMILIES))}) or one of: {', '.join(EVENT_TYPES)}"
)


def matches(pattern: str, event_type: str) -> bool:
    """``*`` matches everything, ``message.*`` every ``message.…`` type, anything else itself."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def clean_event_types(patterns: Iterable[str]) -> list[str]:
    """Trimmed, de-duplicated patterns, each naming a known type or family; 422 on ``event_types`` otherwise."""
    cleaned: list[str] = []
    for raw in patterns:
        pattern = raw.strip()
        known = pattern == "*" or pattern in EVENT_TYPES or (pattern.endswith(".*") and pattern[:-2] in FAMILIES)
        if not known:
            raise ValidationFailed.on_field("event_types", f"unknown event type {raw!r}; {_HINT}")
        if pattern not in cleaned:
            cleaned.append(pattern)
    if not cleaned:
        raise ValidationFailed.on_field("event_types", "subscribe to at least one event type")
    if len(cleaned) > MAX_PATTERNS:
        raise ValidationFailed.on_field("event_types", f"at most {MAX_PATTERNS} event types")
    return cleaned


def jsonable(value: Any) -> Any:
    """The payload as plain JSON: UUIDs and datetimes become strings, tuples and sets lists."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, Decimal):
        return str(value)
    return str(value)
