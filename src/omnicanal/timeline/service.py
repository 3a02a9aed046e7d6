"""Writing events (with identity resolution) and reading a customer's timeline."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from omnicanal.customers.identities import normalize, normalize_identity
from omnicanal.customers.resolution import Resolver
from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import bulk_insert, driver_rows, uuid_from_db
from omnicanal.errors import DomainError, FieldError, ValidationFailed
from omnicanal.pagination import check_limit, decode_cursor, encode_cursor
from omnicanal.settings import Settings
from omnicanal.timeline.models import Event
from omnicanal.timeline.schemas import EVENT_CHANNELS, EVENT_TYPE_PATTERN, EventIn, EventOut

MAX_PROPERTIES_BYTES = 32_768


@dataclass
class EventInput:
    """An event checked and normalized, ready for :func:`ingest`."""

    event_id: str
    type: str
    channel: str
    occurred_at: datetime
    identities: list[tuple[str, str]]
    customer_id: uuid.UUID | None
    properties: dict[str, Any]


@dataclass
class IngestResult:
    event_id: str
    customer_id: uuid.UUID | None = None
    duplicate: bool = False
    error: DomainError | None = None
    merged: list[uuid.UUID] = field(default_factory=list)


def _errors_of(exc: ValidationError, prefix: str) -> list[FieldError]:
    return [
        FieldError(".".join([prefix, *(str(p) for p in err["loc"])]).strip("."), err["msg"]) for err in exc.errors()
    ]


_EVENT_FIELDS = frozenset(EventIn.model_fields)
_IDENTITY_FIELDS = frozenset({"type", "value"})
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN.removeprefix("^").removesuffix("$"))
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MISSING: Any = object()

# id, type, channel, occurred_at, identities as (type, value), customer_id, properties
_Fields = tuple[str, str, str, datetime, list[tuple[str, str]], uuid.UUID | None, dict[str, Any]]


def _plain_event(raw: Any) -> _Fields | None:
    """The fields of an event in the common spelling, checked by hand; None for anything else.

    ``EventIn`` costs about as much as the rest of ``prepare_event`` together (bench/README.md, B1).
    This accepts only input that ``EventIn`` accepts too, with the same values (a timestamp in the
    RFC 3339 form clients send, a canonical UUID, JSON types as JSON parsing gives them); anything
    else returns None and goes through ``EventIn``, so refusals and their messages are pydantic's.
    """
    if type(raw) is not dict or not raw.keys() <= _EVENT_FIELDS:
        return None
    event_id = raw.get("id")
    kind = raw.get("type")
    channel = raw.get("channel")
    when = raw.get("occurred_at")
    if (
        type(event_id) is not str
        or not 0 < len(event_id) <= 200
        or type(kind) is not str
        or not _EVENT_TYPE.fullmatch(kind)
        or type(channel) is not str
        or len(channel) > 32
        or type(when) is not str
        or not _TIMESTAMP.fullmatch(when)
    ):
        return None
    try:
        occurred_at = datetime.fromisoformat(when)
    except ValueError:
        return None
    identities: list[tuple[str, str]] = []
    given = raw.get("identities", _MISSING)
    if given is not _MISSING:
        if type(given) is not list or len(given) > 20:
            return None
        for item in given:
            if type(item) is not dict or item.keys() != _IDENTITY_FIELDS:
                return None
            id_type = item["type"]
            value = item["value"]
            if type(id_type) is not str or type(value) is not str or len(id_type) > 32 or len(value) > 320:
                return None
            identities.append((id_type, value))
    customer_id = raw.get("customer_id")
    if customer_id is not None:
        if type(customer_id) is not str or not _UUID.fullmatch(customer_id):
            return None
        customer_id = uuid.UUID(customer_id)
    properties = raw.get("properties", _MISSING)
    if properties is _MISSING:
        properties = {}
    elif type(properties) is not dict or not all(type(key) is str for key in properties):
        return None
    return event_id, kind, channel, occurred_at, identities, customer_id, properties


def _validated(raw: Any, field_prefix: str) -> _Fields:
    fields = _plain_event(raw)
    if fields is not None:
        return fields
    try:
        event = EventIn.model_validate(raw)
    except ValidationError as exc:
        errors = _errors_of(exc, field_prefix.rstrip("."))
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors) from None
    identities = [(identity.type, identity.value) for identity in event.identities]
    return event.id, event.type, event.channel, event.occurred_at, identities, event.customer_id, event.properties


def prepare_event(raw: Any, *, settings: Settings, now: datetime, field_prefix: str = "") -> EventInput:
    """Validate and normalize one event as sent by a client, or raise :class:`ValidationFailed`."""

    def name(field_name: str) -> str:
        return f"{field_prefix}{field_name}"

    event_id, kind, channel, occurred_at, identities, customer_id, properties = _validated(raw, field_prefix)
    if channel not in EVENT_CHANNELS:
        raise ValidationFailed.on_field(
            name("channel"), f"unknown channel {channel!r}; one of: {', '.join(sorted(EVENT_CHANNELS))}"
        )
    if occurred_at.tzinfo is None:
        raise ValidationFailed.on_field(name("occurred_at"), "must carry a timezone, e.g. 2026-11-23T10:00:00Z")
    if occurred_at - now > timedelta(seconds=settings.future_tolerance_seconds):
        raise ValidationFailed.on_field(
            name("occurred_at"),
            f"is more than {settings.future_tolerance_seconds} s in the future (server time {now.isoformat()})",
        )
    if not identities and customer_id is None:
        raise ValidationFailed.on_field(name("identities"), "give at least one identity or a customer_id")
    region = settings.default_region
    try:
        keys = [(id_type, normalize(id_type, value, region)) for id_type, value in identities]
    except ValueError:  # InvalidIdentity, or a phone library's refusal
        # again, naming the field that is wrong (building every field name up front cost more than normalizing)
        keys = [
            (id_type, normalize_identity(id_type, value, region=region, field=name(f"identities[{index}]")))
            for index, (id_type, value) in enumerate(identities)
        ]
    if len(orjson.dumps(properties)) > MAX_PROPERTIES_BYTES:
        raise ValidationFailed.on_field(name("properties"), f"must be at most {MAX_PROPERTIES_BYTES} bytes as JSON")
    return EventInput(
        event_id=event_id,
        type=kind,
        channel=channel,
        occurred_at=occurred_at,
        identities=keys,
        customer_id=customer_id,
        properties=properties,
    )


def ingest(session: Session, events: Sequence[EventInput], *, settings: Settings) -> list[IngestResult]:
    """Store events, resolving each to its customer. Idempotent on ``event_id``.

    One lookup for known event ids, one for known identities, one insert per table.
    """
    now = utcnow()
    ids = list(dict.fromkeys(e.event_id for e in events))
    known: dict[str, uuid.UUID] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        sql = f"SELECT event_id, customer_id FROM events WHERE event_id IN ({', '.join('?' * len(chunk))})"
        for event_id, owner in driver_rows(session, sql, chunk):
            known[event_id] = uuid_from_db(owner)
    resolver = Resolver(session, settings, now=now)
    resolver.prefetch(key for e in events for key in e.identities)

    rows: list[dict[str, Any]] = []
    results: list[IngestResult] = []
    for item in events:
        if item.event_id in known:
            results.append(IngestResult(item.event_id, known[item.event_id], duplicate=True))
            continue
        try:
            resolution = resolver.resolve(
                item.identities, customer_id=item.customer_id, source=item.channel, event_id=item.event_id
            )
        except DomainError as exc:
            results.append(IngestResult(item.event_id, error=exc))
            continue
        if resolution.merged:
            merged = set(resolution.merged)
            for row in rows:
                if row["customer_id"] in merged:
                    row["customer_id"] = resolution.customer_id
            for result in results:
                if result.customer_id in merged:
                    result.customer_id = resolution.customer_id
            for event_id, owner in list(known.items()):
                if owner in merged:
                    known[event_id] = resolution.customer_id
        rows.append(
            {
                "event_id": item.event_id,
                "customer_id": resolution.customer_id,
                "source_customer_id": resolution.customer_id,
                "type": item.type,
                "channel": item.channel,
                "occurred_at": item.occurred_at,
                "received_at": now,
                "properties": item.properties,
            }
        )
        known[item.event_id] = resolution.customer_id
        results.append(IngestResult(item.event_id, resolution.customer_id, merged=resolution.merged))
    resolver.flush()
    bulk_insert(session, Event, rows)
    return results


def record_event(
    session: Session,
    *,
    customer_id: uuid.UUID,
    type: str,
    channel: str,
    properties: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> str:
    """Add a touchpoint that the platform itself observed (a consent change, a profile edit)."""
    # one driver statement: commands record an event or more each (an order three), and building an ORM
    # INSERT cost several times the insert itself (bench/commerce.py, K1)
    row = observed_event_row(customer_id=customer_id, type=type, channel=channel, properties=properties,
                             occurred_at=occurred_at)  # fmt: skip
    bulk_insert(session, Event, [row])
    return str(row["event_id"])


def observed_event_row(
    *,
    customer_id: uuid.UUID,
    type: str,
    channel: str,
    properties: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The row :func:`record_event` inserts, for callers that insert many with one ``bulk_insert``."""
    now = now or utcnow()
    return {
        "event_id": f"oc_{uuid7().hex}",
        "customer_id": customer_id,
        "source_customer_id": customer_id,
        "type": type,
        "channel": channel,
        "occurred_at": occurred_at or now,
        "received_at": now,
        "properties": properties or {},
    }


def event_out(event: Event) -> EventOut:
    return EventOut(
        id=event.event_id,
        type=event.type,
        channel=event.channel,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        customer_id=event.customer_id,
        properties=event.properties or {},
    )


def timeline(
    session: Session,
    *,
    customer_id: uuid.UUID,
    channel: str | None = None,
    type: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Event], str | None]:
    """A customer's events on every channel, newest first."""
    limit = check_limit(limit)
    stmt = select(Event).where(Event.customer_id == customer_id)
    if channel:
        stmt = stmt.where(Event.channel == channel)
    if type:
        stmt = stmt.where(Event.type == type)
    after = decode_cursor(cursor, size=2)
    if after is not None:
        try:
            when = datetime.fromisoformat(str(after[0]))
            seq = int(after[1])
        except (TypeError, ValueError):
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
        stmt = stmt.where(or_(Event.occurred_at < when, and_(Event.occurred_at == when, Event.seq < seq)))
    rows = list(session.scalars(stmt.order_by(Event.occurred_at.desc(), Event.seq.desc()).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last.occurred_at.isoformat(), last.seq])
    return rows[:limit], next_cursor
