"""The customer 360 read: profile, identities, consents and the newest events, in one place.

This is a hot path (bench/README.md, B3): the live customer's profile, identities and newest events
are read with compiled Core statements on the session's connection instead of ORM entity queries,
which cost several times more per statement. Anything unusual (an unknown, erased or merged-away id)
takes the general path, so the answers and errors are exactly those of the domain services.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy import Integer, bindparam, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from omnicanal.consent.models import ConsentChange
from omnicanal.consent.schemas import ConsentOut
from omnicanal.consent.service import current_consents
from omnicanal.customers.models import Customer, Identity, Merge
from omnicanal.customers.schemas import CustomerOut, IdentityOut, MergeRecord
from omnicanal.customers.service import customer_out, get_customer, merges_of
from omnicanal.driver_sql import connection_of
from omnicanal.pagination import check_limit, encode_cursor
from omnicanal.timeline.models import Event
from omnicanal.timeline.schemas import EventOut
from omnicanal.timeline.service import event_out, timeline


class Customer360(BaseModel):
    customer: CustomerOut
    consents: list[ConsentOut]
    events: list[EventOut]
    events_next_cursor: str | None
    merges: list[MergeRecord]


_customers = Customer.__table__.c
_identities = Identity.__table__.c
_events = Event.__table__.c
_consents = ConsentChange.__table__.c
_merges = Merge.__table__.c

_CUSTOMER = select(
    _customers.id,
    _customers.traits,
    _customers.created_at,
    _customers.updated_at,
    _customers.merged_into_id,
    _customers.erased_at,
).where(_customers.id == bindparam("customer_id"))
_IDENTITIES = (
    select(_identities.type, _identities.value, _identities.source, _identities.added_at)
    .where(_identities.customer_id == bindparam("customer_id"))
    .order_by(_identities.added_at, _identities.id)
)
# the same order and tie-break as timeline.service.timeline
_EVENTS = (
    select(
        _events.seq,
        _events.event_id,
        _events.type,
        _events.channel,
        _events.occurred_at,
        _events.received_at,
        _events.customer_id,
        _events.properties,
    )
    .where(_events.customer_id == bindparam("customer_id"))
    .order_by(_events.occurred_at.desc(), _events.seq.desc())
    .limit(bindparam("limit", type_=Integer))
)
# as consent.service.current_consents: every change in order, the latest per channel and purpose wins
_CONSENTS = (
    select(
        _consents.channel,
        _consents.purpose,
        _consents.status,
        _consents.source,
        _consents.proof,
        _consents.changed_at,
        _consents.changed_by,
    )
    .where(_consents.customer_id == bindparam("customer_id"))
    .order_by(_consents.changed_at, _consents.id)
)
# as customers.service.merges_of
_MERGES = (
    select(Merge.__table__)
    .where(or_(_merges.survivor_id == bindparam("customer_id"), _merges.merged_id == bindparam("customer_id")))
    .order_by(_merges.created_at.desc())
)


def customer_360(session: Session, *, customer_id: uuid.UUID, events: int = 50) -> Customer360:
    connection = connection_of(session)
    row = connection.execute(_CUSTOMER, {"customer_id": customer_id}).first()
    if row is None or row.erased_at is not None or row.merged_into_id is not None:
        return _general(session, customer_id=customer_id, events=events)
    limit = check_limit(events)
    identities = [
        IdentityOut(type=kind, value=value, source=source, added_at=added_at)
        for kind, value, source, added_at in connection.execute(_IDENTITIES, {"customer_id": row.id})
    ]
    event_rows = connection.execute(_EVENTS, {"customer_id": row.id, "limit": limit + 1}).all()
    cursor = None
    if len(event_rows) > limit:
        last = event_rows[limit - 1]
        cursor = encode_cursor([last.occurred_at.isoformat(), last.seq])
    return Customer360(
        customer=CustomerOut(
            id=row.id,
            traits=row.traits or {},
            identities=identities,
            created_at=row.created_at,
            updated_at=row.updated_at,
            merged_into=None,
        ),
        consents=_current_consents(connection, row.id),
        events=[
            EventOut(
                id=e.event_id,
                type=e.type,
                channel=e.channel,
                occurred_at=e.occurred_at,
                received_at=e.received_at,
                customer_id=e.customer_id,
                properties=e.properties or {},
            )
            for e in event_rows[:limit]
        ],
        events_next_cursor=cursor,
        merges=[
            MergeRecord.model_validate(m, from_attributes=True)
            for m in connection.execute(_MERGES, {"customer_id": row.id})
        ],
    )


def _current_consents(connection: Connection, customer_id: uuid.UUID) -> list[ConsentOut]:
    latest: dict[tuple[str, str], Any] = {}
    for change in connection.execute(_CONSENTS, {"customer_id": customer_id}):
        latest[(change.channel, change.purpose)] = change
    return [
        ConsentOut(
            channel=change.channel,
            purpose=change.purpose,
            status=change.status,
            source=change.source,
            proof=change.proof,
            changed_at=change.changed_at,
            changed_by=change.changed_by,
        )
        for _, change in sorted(latest.items())
    ]


def _general(session: Session, *, customer_id: uuid.UUID, events: int) -> Customer360:
    """Through the domain services: raises NotFound or Moved as every other customer read does."""
    customer = get_customer(session, customer_id)
    rows, cursor = timeline(session, customer_id=customer.id, limit=events)
    return Customer360(
        customer=customer_out(session, customer),
        consents=current_consents(session, customer_id=customer.id),
        events=[event_out(row) for row in rows],
        events_next_cursor=cursor,
        merges=[MergeRecord.model_validate(m, from_attributes=True) for m in merges_of(session, customer.id)],
    )


def as_json(view: Customer360) -> dict[str, Any]:
    return view.model_dump(mode="json")


def _dumps(view: Customer360) -> bytes:
    return orjson.dumps(as_json(view))


def customer_360_json(session: Session, *, customer_id: uuid.UUID, events: int = 50) -> bytes:
    """:func:`customer_360` as the JSON the API answers, built straight from the rows.

    The same document as ``Customer360`` serialized by pydantic (same keys in the same order, UUIDs as
    strings, UTC datetimes as pydantic writes them, ``...Z``), without building and then dumping the
    models: on the 360 read (bench/README.md, B3) that cost as much as the queries. Anything unusual
    goes through :func:`customer_360` and pydantic: an unknown, erased or merged-away id (same
    ``NotFound`` / ``Moved``), or a value orjson refuses (an integer beyond 64 bits in traits).
    """
    connection = connection_of(session)
    row = connection.execute(_CUSTOMER, {"customer_id": customer_id}).first()
    if row is None or row.erased_at is not None or row.merged_into_id is not None:
        return _dumps(_general(session, customer_id=customer_id, events=events))
    limit = check_limit(events)
    owner = row.id
    identities = [
        {"type": kind, "value": value, "source": source, "added_at": added_at}
        for kind, value, source, added_at in connection.execute(_IDENTITIES, {"customer_id": owner})
    ]
    event_rows = connection.execute(_EVENTS, {"customer_id": owner, "limit": limit + 1}).all()
    cursor = None
    if len(event_rows) > limit:
        last = event_rows[limit - 1]
        cursor = encode_cursor([last.occurred_at.isoformat(), last.seq])
    latest: dict[tuple[str, str], Any] = {}
    for change in connection.execute(_CONSENTS, {"customer_id": owner}):
        latest[(change.channel, change.purpose)] = change
    merges = [
        MergeRecord.model_validate(m, from_attributes=True).model_dump(mode="json")
        for m in connection.execute(_MERGES, {"customer_id": owner})
    ]
    view = {
        "customer": {
            "id": owner,
            "traits": row.traits or {},
            "identities": identities,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "merged_into": None,
        },
        "consents": [
            {
                "channel": c.channel,
                "purpose": c.purpose,
                "status": c.status,
                "source": c.source,
                "proof": c.proof,
                "changed_at": c.changed_at,
                "changed_by": c.changed_by,
            }
            for _, c in sorted(latest.items())
        ],
        "events": [
            {
                "id": e.event_id,
                "type": e.type,
                "channel": e.channel,
                "occurred_at": e.occurred_at,
                "received_at": e.received_at,
                "customer_id": e.customer_id,
                "properties": e.properties or {},
            }
            for e in event_rows[:limit]
        ],
        "events_next_cursor": cursor,
        "merges": merges,
    }
    try:
        return orjson.dumps(view, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        return _dumps(customer_360(session, customer_id=customer_id, events=events))


# -- SQLite: the same read on the driver connection ------------------------------------------------
# SQLAlchemy's per-statement work (cache key, execution context, result processing) and the
# Session's begin/commit cost about five times what SQLite needs for these five indexed reads
# (measured in process: ~2.4 ms against ~0.2 ms for the raw statements; bench/README.md, B3).
# These are the statements above spelled for SQLite, whose values SQLAlchemy stores as: UUIDs
# as 32 hex digits, datetimes as naive UTC text, JSON as text. Any row that is not plain
# (a customer to follow or refuse, a merge to show, a value that does not parse back exactly)
# returns None and the caller takes the general path.

_SQLITE_CUSTOMER = "SELECT traits, created_at, updated_at, merged_into_id, erased_at FROM customers WHERE id = ?"
_SQLITE_IDENTITIES = "SELECT type, value, source, added_at FROM identities WHERE customer_id = ? ORDER BY added_at, id"
_SQLITE_EVENTS = (
    "SELECT seq, event_id, type, channel, occurred_at, received_at, properties FROM events"
    " WHERE customer_id = ? ORDER BY occurred_at DESC, seq DESC LIMIT ?"
)
_SQLITE_CONSENTS = (
    "SELECT channel, purpose, status, source, proof, changed_at, changed_by FROM consent_changes"
    " WHERE customer_id = ? ORDER BY changed_at, id"
)
_SQLITE_MERGES = "SELECT 1 FROM customer_merges WHERE survivor_id = ? OR merged_id = ? LIMIT 1"


class _NotPlain(Exception):
    pass


def _when(text: Any) -> datetime:
    if type(text) is not str:
        raise _NotPlain
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _NotPlain from None
    if value.tzinfo is not None:
        raise _NotPlain
    return value.replace(tzinfo=UTC)


def _object(text: Any) -> Any:
    if text is None:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN, or an integer beyond 64 bits: json.loads reads them
        raise _NotPlain from None
    if value and type(value) is not dict:
        raise _NotPlain
    return value or {}


def sqlite_customer_360_json(dbapi_connection: Any, *, customer_id: uuid.UUID, events: int = 50) -> bytes | None:
    """:func:`customer_360_json` for a live customer without merges, on a SQLite driver connection
    inside a read transaction; None when the general path must answer."""
    limit = check_limit(events)
    key = customer_id.hex
    cursor = dbapi_connection.cursor()
    try:
        row = cursor.execute(_SQLITE_CUSTOMER, (key,)).fetchone()
        if row is None or row[3] is not None or row[4] is not None:
            return None
        if cursor.execute(_SQLITE_MERGES, (key, key)).fetchone() is not None:
            return None
        traits, created_at, updated_at = _object(row[0]), _when(row[1]), _when(row[2])
        identities = [
            {"type": kind, "value": value, "source": source, "added_at": _when(added_at)}
            for kind, value, source, added_at in cursor.execute(_SQLITE_IDENTITIES, (key,))
        ]
        event_rows = cursor.execute(_SQLITE_EVENTS, (key, limit + 1)).fetchall()
        latest: dict[tuple[str, str], tuple[Any, ...]] = {}
        for change in cursor.execute(_SQLITE_CONSENTS, (key,)):
            latest[(change[0], change[1])] = change
        next_cursor = None
        if len(event_rows) > limit:
            last = event_rows[limit - 1]
            next_cursor = encode_cursor([_when(last[4]).isoformat(), last[0]])
        view = {
            "customer": {
                "id": customer_id,
                "traits": traits,
                "identities": identities,
                "created_at": created_at,
                "updated_at": updated_at,
                "merged_into": None,
            },
            "consents": [
                {
                    "channel": channel,
                    "purpose": purpose,
                    "status": status,
                    "source": source,
                    "proof": proof,
                    "changed_at": _when(changed_at),
                    "changed_by": changed_by,
                }
                for _, (channel, purpose, status, source, proof, changed_at, changed_by) in sorted(latest.items())
            ],
            "events": [
                {
                    "id": event_id,
                    "type": kind,
                    "channel": channel,
                    "occurred_at": _when(occurred_at),
                    "received_at": _when(received_at),
                    "customer_id": customer_id,
                    "properties": _object(properties),
                }
                for _, event_id, kind, channel, occurred_at, received_at, properties in event_rows[:limit]
            ],
            "events_next_cursor": next_cursor,
            "merges": [],
        }
        return orjson.dumps(view, option=orjson.OPT_UTC_Z)
    except (_NotPlain, orjson.JSONEncodeError):
        return None
    finally:
        cursor.close()
