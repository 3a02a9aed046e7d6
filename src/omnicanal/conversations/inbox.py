"""The inbox: conversations listed newest activity first (one query of the listed columns), and a
conversation as the API shows it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from omnicanal.conversations.models import Conversation
from omnicanal.conversations.schemas import ConversationOut, SlaOut
from omnicanal.conversations.service import STATUSES
from omnicanal.customers.models import Customer
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow
from omnicanal.errors import ValidationFailed
from omnicanal.pagination import check_limit, decode_time_id_cursor, encode_cursor


def conversation_out(conversation: Conversation, *, customer_name: str | None = None,
                     now: datetime | None = None) -> ConversationOut:  # fmt: skip
    now = now or utcnow()
    first_due, resolution_due = conversation.first_response_due_at, conversation.resolution_due_at
    first_breached = bool(first_due and ((conversation.first_response_at or now) > first_due))
    resolution_breached = bool(resolution_due and ((conversation.resolved_at or now) > resolution_due))
    return ConversationOut(
        id=conversation.id,
        customer_id=conversation.customer_id,
        customer_name=customer_name,
        status=conversation.status,
        snooze_until=conversation.snooze_until,
        assignee_id=conversation.assignee_id,
        team_id=conversation.team_id,
        priority=conversation.priority,
        labels=list(conversation.labels or []),
        language=conversation.language,
        last_channel=conversation.last_channel,
        last_message_at=conversation.last_message_at,
        first_response_at=conversation.first_response_at,
        resolved_at=conversation.resolved_at,
        created_at=conversation.created_at,
        sla=SlaOut(
            first_response_due_at=first_due,
            resolution_due_at=resolution_due,
            first_response_breached=first_breached,
            resolution_breached=resolution_breached,
        ),
    )


def customer_names(session: Session, customer_ids: set[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    if not customer_ids:
        return {}
    rows = session.execute(select(Customer.id, Customer.traits).where(Customer.id.in_(customer_ids)))
    names: dict[uuid.UUID, str | None] = {}
    for customer_id, traits in rows:
        traits = traits or {}
        name = " ".join(p for p in (traits.get("first_name"), traits.get("last_name")) if p)
        names[customer_id] = name or None
    return names


def list_conversations(
    session: Session,
    *,
    status: str | None = None,
    assignee: str | None = None,
    team_id: uuid.UUID | None = None,
    channel: str | None = None,
    customer_id: uuid.UUID | None = None,
    me: uuid.UUID | None = None,
    limit: int = 25,
    cursor: str | None = None,
) -> tuple[list[ConversationOut], str | None]:
    """Newest activity first. ``assignee``: an agent id, ``me``, ``none`` (unassigned) or ``any``."""
    items, next_cursor = inbox_page(
        session, status=status, assignee=assignee, team_id=team_id, channel=channel, customer_id=customer_id,
        me=me, limit=limit, cursor=cursor,
    )  # fmt: skip
    return [ConversationOut.model_validate(item) for item in items], next_cursor


_c = Conversation.__table__.c
_INBOX_COLUMNS = (
    _c.id, _c.customer_id, _c.status, _c.snooze_until, _c.assignee_id, _c.team_id, _c.priority, _c.labels,
    _c.language, _c.last_channel, _c.last_message_at, _c.first_response_at, _c.resolved_at, _c.created_at,
    _c.first_response_due_at, _c.resolution_due_at,
)  # fmt: skip


def inbox_page(
    session: Session,
    *,
    status: str | None = None,
    assignee: str | None = None,
    team_id: uuid.UUID | None = None,
    channel: str | None = None,
    customer_id: uuid.UUID | None = None,
    me: uuid.UUID | None = None,
    limit: int = 25,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """:func:`list_conversations` as plain dicts (the fields of ``ConversationOut``), for the inbox's hot path.

    One Core query of the listed columns joined to the customers' traits: no ORM objects, no second query.
    """
    limit = check_limit(limit)
    c = _c
    stmt = select(*_INBOX_COLUMNS, Customer.traits).join(Customer, Customer.id == c.customer_id)
    if status is not None:
        if status not in STATUSES:
            raise ValidationFailed.on_field("status", f"must be one of: {', '.join(STATUSES)}")
        stmt = stmt.where(c.status == status)
    if assignee == "none":
        stmt = stmt.where(c.assignee_id.is_(None))
    elif assignee == "me":
        if me is None:
            raise ValidationFailed.on_field("assignee", "'me' needs a staff user, not an API key")
        stmt = stmt.where(c.assignee_id == me)
    elif assignee not in (None, "", "any"):
        try:
            stmt = stmt.where(c.assignee_id == uuid.UUID(assignee))
        except ValueError:
            raise ValidationFailed.on_field("assignee", "must be an agent id, 'me', 'none' or 'any'") from None
    if team_id is not None:
        stmt = stmt.where(c.team_id == team_id)
    if channel:
        stmt = stmt.where(c.last_channel == channel)
    if customer_id is not None:
        stmt = stmt.where(c.customer_id == get_customer(session, customer_id, follow_merges=True).id)
    after = decode_time_id_cursor(cursor)
    if after is not None:
        when, last_id = after
        stmt = stmt.where(or_(c.last_message_at < when, and_(c.last_message_at == when, c.id < last_id)))
    rows = session.execute(stmt.order_by(c.last_message_at.desc(), c.id.desc()).limit(limit + 1)).all()
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last.last_message_at.isoformat(), str(last.id)])
    now = utcnow()
    items = []
    for row in rows[:limit]:
        traits = row.traits or {}
        name = " ".join(p for p in (traits.get("first_name"), traits.get("last_name")) if p)
        first_due, resolution_due = row.first_response_due_at, row.resolution_due_at
        items.append(
            {
                "id": row.id, "customer_id": row.customer_id, "customer_name": name or None, "status": row.status,
                "snooze_until": row.snooze_until, "assignee_id": row.assignee_id, "team_id": row.team_id,
                "priority": row.priority, "labels": list(row.labels or []), "language": row.language,
                "last_channel": row.last_channel, "last_message_at": row.last_message_at,
                "first_response_at": row.first_response_at, "resolved_at": row.resolved_at,
                "created_at": row.created_at,
                "sla": {
                    "first_response_due_at": first_due,
                    "resolution_due_at": resolution_due,
                    "first_response_breached": bool(first_due and ((row.first_response_at or now) > first_due)),
                    "resolution_breached": bool(resolution_due and ((row.resolved_at or now) > resolution_due)),
                },
            }
        )  # fmt: skip
    return items, next_cursor


_SQLITE_INBOX = (
    "SELECT c.id, c.customer_id, c.status, c.snooze_until, c.assignee_id, c.team_id, c.priority, c.labels, "
    "c.language, c.last_channel, c.last_message_at, c.first_response_at, c.resolved_at, c.created_at, "
    "c.first_response_due_at, c.resolution_due_at, cu.traits "
    "FROM conversations AS c JOIN customers AS cu ON cu.id = c.customer_id"
)


def sqlite_inbox_page(
    dbapi_connection: Any,
    *,
    status: str | None = None,
    assignee: str | None = None,
    team_id: uuid.UUID | None = None,
    channel: str | None = None,
    me: uuid.UUID | None = None,
    limit: int = 25,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """SQLite only: :func:`inbox_page` (without ``customer_id``) on a driver connection (``Database.sqlite_read``).

    The same query, filters, errors and values; the rows converted as the columns' types would
    (UUIDs from hex, UTC datetimes, JSON), without SQLAlchemy's per-statement and per-value work.
    """
    limit = check_limit(limit)
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        if status not in STATUSES:
            raise ValidationFailed.on_field("status", f"must be one of: {', '.join(STATUSES)}")
        where.append("c.status = ?")
        params.append(status)
    if assignee == "none":
        where.append("c.assignee_id IS NULL")
    elif assignee == "me":
        if me is None:
            raise ValidationFailed.on_field("assignee", "'me' needs a staff user, not an API key")
        where.append("c.assignee_id = ?")
        params.append(me.hex)
    elif assignee not in (None, "", "any"):
        try:
            params.append(uuid.UUID(assignee).hex)
        except ValueError:
            raise ValidationFailed.on_field("assignee", "must be an agent id, 'me', 'none' or 'any'") from None
        where.append("c.assignee_id = ?")
    if team_id is not None:
        where.append("c.team_id = ?")
        params.append(team_id.hex)
    if channel:
        where.append("c.last_channel = ?")
        params.append(channel)
    after = decode_time_id_cursor(cursor)
    if after is not None:
        when, last_id = after
        if when.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a timezone")  # as UTCDateTime would
        stored_when = when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        where.append("(c.last_message_at < ? OR (c.last_message_at = ? AND c.id < ?))")
        params += [stored_when, stored_when, last_id.hex]
    sql = _SQLITE_INBOX + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY c.last_message_at DESC, c.id DESC LIMIT ?"
    rows = dbapi_connection.execute(sql, [*params, limit + 1]).fetchall()
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        last_at = _sqlite_time(last[10])
        assert last_at is not None
        next_cursor = encode_cursor([last_at.isoformat(), str(uuid.UUID(last[0]))])
    now = utcnow()
    items = []
    for row in rows[:limit]:
        (id_, customer, state, snooze_until, assignee_id, team, priority, labels, language, last_channel,
         last_message_at, first_response_at, resolved_at, created_at, first_due, resolution_due,
         traits) = row  # fmt: skip
        traits = orjson.loads(traits) if traits is not None else None
        traits = traits or {}
        name = " ".join(p for p in (traits.get("first_name"), traits.get("last_name")) if p)
        first_response = _sqlite_time(first_response_at)
        resolved = _sqlite_time(resolved_at)
        first_due_at, resolution_due_at = _sqlite_time(first_due), _sqlite_time(resolution_due)
        items.append(
            {
                "id": uuid.UUID(id_), "customer_id": uuid.UUID(customer), "customer_name": name or None,
                "status": state, "snooze_until": _sqlite_time(snooze_until),
                "assignee_id": uuid.UUID(assignee_id) if assignee_id is not None else None,
                "team_id": uuid.UUID(team) if team is not None else None, "priority": priority,
                "labels": list((orjson.loads(labels) if labels is not None else None) or []),
                "language": language, "last_channel": last_channel,
                "last_message_at": _sqlite_time(last_message_at), "first_response_at": first_response,
                "resolved_at": resolved, "created_at": _sqlite_time(created_at),
                "sla": {
                    "first_response_due_at": first_due_at,
                    "resolution_due_at": resolution_due_at,
                    "first_response_breached": bool(first_due_at and ((first_response or now) > first_due_at)),
                    "resolution_breached": bool(resolution_due_at and ((resolved or now) > resolution_due_at)),
                },
            }
        )  # fmt: skip
    return items, next_cursor


def _sqlite_time(value: str | None) -> datetime | None:
    """What UTCDateTime reads back from SQLite's text (stored in UTC, without offset)."""
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
