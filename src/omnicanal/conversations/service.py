"""Conversations: reading, replying on any channel, work states and assignment."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from omnicanal.access.models import StaffUser
from omnicanal.conversations.channels import CHANNEL_RULES, ReplyOption, reply_options
from omnicanal.conversations.models import Conversation, Message
from omnicanal.conversations.notify import announce, announce_assigned, conversation_data, message_data
from omnicanal.conversations.reply_content import check_reply_content, interactive_record
from omnicanal.conversations.schemas import ConversationOut, MessageOut, SlaOut
from omnicanal.customers.models import Customer, Identity
from omnicanal.customers.service import get_customer
from omnicanal.db import bulk_update, utcnow
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.outbox.service import enqueue
from omnicanal.pagination import check_limit, decode_cursor, encode_cursor
from omnicanal.routing import service as routing
from omnicanal.routing.models import Team

STATUSES = ("open", "pending", "snoozed", "resolved")
TRANSITIONS = {
    "open": {"pending", "snoozed", "resolved"},
    "pending": {"open", "snoozed", "resolved"},
    "snoozed": {"open", "pending", "resolved"},
    "resolved": {"open"},
}
_MENTION = re.compile(r"@([A-Za-z0-9._-]+)")


def get_conversation(session: Session, conversation_id: uuid.UUID, *, for_update: bool = False) -> Conversation:
    conversation = session.get(Conversation, conversation_id, with_for_update=for_update or None)
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return conversation


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
    after = decode_cursor(cursor, size=2)
    if after is not None:
        try:
            when, last_id = datetime.fromisoformat(str(after[0])), uuid.UUID(str(after[1]))
        except ValueError:
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
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
    after = decode_cursor(cursor, size=2)
    if after is not None:
        try:
            when, last_id = datetime.fromisoformat(str(after[0])), uuid.UUID(str(after[1]))
        except ValueError:
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
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


def message_out(message: Message) -> MessageOut:
    return MessageOut.model_validate(message, from_attributes=True)


def list_messages(
    session: Session, *, conversation_id: uuid.UUID, limit: int = 100, cursor: str | None = None
) -> tuple[list[Message], str | None]:
    """Oldest first, every channel interleaved in time."""
    get_conversation(session, conversation_id)
    limit = check_limit(limit)
    stmt = select(Message).where(Message.conversation_id == conversation_id)
    after = decode_cursor(cursor, size=2)
    if after is not None:
        try:
            when, last_id = datetime.fromisoformat(str(after[0])), uuid.UUID(str(after[1]))
        except ValueError:
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
        stmt = stmt.where(or_(Message.created_at > when, and_(Message.created_at == when, Message.id > last_id)))
    rows = list(session.scalars(stmt.order_by(Message.created_at, Message.id).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor([last.created_at.isoformat(), str(last.id)])
    return rows[:limit], next_cursor


def channel_options(session: Session, conversation: Conversation, *, now: datetime | None = None) -> list[ReplyOption]:
    identities: dict[str, list[str]] = defaultdict(list)
    for kind, value in session.execute(
        select(Identity.type, Identity.value)
        .where(Identity.customer_id == conversation.customer_id)
        .order_by(Identity.added_at.desc())
    ):
        identities[kind].append(value)
    # A service window (WhatsApp: 24 h) runs from when the customer wrote, not from when we heard of it:
    # a message delivered late (or backfilled) does not reopen a window the provider considers closed.
    last_inbound: dict[str, datetime] = {
        channel: when
        for channel, when in session.execute(
            select(Message.channel, func.max(Message.occurred_at))
            .where(Message.customer_id == conversation.customer_id, Message.direction == "inbound")
            .group_by(Message.channel)
        )
    }
    return reply_options(identities=identities, last_inbound=last_inbound, now=now or utcnow())


def _mentions(session: Session, text: str) -> list[str]:
    handles = {m.lower() for m in _MENTION.findall(text)}
    if not handles:
        return []
    users = session.scalars(select(StaffUser).where(StaffUser.active.is_(True)))
    return sorted(str(u.id) for u in users if u.email.split("@")[0].lower() in handles)


def last_channel_instance(session: Session, customer_id: uuid.UUID, channel: str) -> uuid.UUID | None:
    """The configured channel (number, bot, page) the customer last wrote to on ``channel``: replies leave there."""
    return session.scalar(
        select(Message.channel_instance_id)
        .where(
            Message.customer_id == customer_id,
            Message.channel == channel,
            Message.direction == "inbound",
            Message.channel_instance_id.is_not(None),
        )
        .order_by(Message.created_at.desc())
        .limit(1)
    )


def reply(
    session: Session,
    *,
    conversation_id: uuid.UUID,
    text: str,
    channel: str | None,
    private: bool,
    author_type: str,
    author_id: str,
    answer_id: uuid.UUID | None = None,
    attachments: list[dict[str, Any]] | None = None,
    interactive: dict[str, Any] | None = None,
) -> Message:
    """An agent's (or bot's) message. Public replies leave through the outbox after commit.

    ``attachments``: records from ``reply_content.store_reply_attachments``; ``interactive``: an
    ``InteractiveIn`` as a dict (WhatsApp buttons or list).
    """
    conversation = get_conversation(session, conversation_id)
    customer = get_customer(session, conversation.customer_id, follow_merges=True)
    files = list(attachments or [])
    if not files and interactive is None and not text.strip():
        raise ValidationFailed.on_field("text", "must not be empty")
    now = utcnow()
    if private:
        message = Message(
            conversation_id=conversation.id, customer_id=customer.id, source_customer_id=customer.id,
            channel="note", direction="internal", sender_type=author_type, sender_id=author_id, text=text,
            private=True, mentions=_mentions(session, text), status="stored", answer_id=answer_id,
            attachments=files, occurred_at=now, created_at=now, updated_at=now,
        )  # fmt: skip
        if interactive is not None:
            check_reply_content(channel=None, text=text, attachments=files, interactive=interactive)
        session.add(message)
        session.flush()
        announce(session, "note.created", message_data(message) | {"mentions": message.mentions})
        return message

    target = channel or conversation.last_channel
    if target is None:
        raise ValidationFailed.on_field("channel", "this conversation has no channel yet; pick one")
    if target not in CHANNEL_RULES:
        raise ValidationFailed.on_field("channel", f"unknown channel {target!r}; one of: {', '.join(CHANNEL_RULES)}")
    option = next(o for o in channel_options(session, conversation, now=now) if o.channel == target)
    if not option.available:
        raise Conflict(f"cannot reply on {target}: {option.reason}", channel=target, template_only=option.template_only)
    if files or interactive is not None:
        check_reply_content(channel=target, text=text, attachments=files, interactive=interactive)
    instance_id = last_channel_instance(session, customer.id, target)
    message = Message(
        conversation_id=conversation.id, customer_id=customer.id, source_customer_id=customer.id, channel=target,
        direction="outbound", sender_type=author_type, sender_id=author_id, text=text, status="queued",
        answer_id=answer_id, channel_instance_id=instance_id, occurred_at=now, created_at=now, updated_at=now,
        attachments=files + ([interactive_record(interactive)] if interactive is not None else []),
    )  # fmt: skip
    session.add(message)
    session.flush()
    payload: dict[str, Any] = {
        "message_id": str(message.id),
        "conversation_id": str(conversation.id),
        "to": option.address,
        "text": text,
        "format": CHANNEL_RULES[target].format,
        "channel_instance_id": str(instance_id) if instance_id else None,
    }
    if files:
        payload["attachments"] = files
    if interactive is not None:
        payload["interactive"] = interactive
    enqueue(
        session,
        kind="message",
        channel=target,
        payload=payload,
        message_id=message.id,
        customer_id=customer.id,
    )
    if author_type == "agent" and conversation.first_response_at is None:
        conversation.first_response_at = now
    conversation.last_message_at = now
    conversation.updated_at = now
    announce(session, "message.created", message_data(message))
    return message


def set_status(
    session: Session, *, conversation_id: uuid.UUID, status: str, snooze_until: datetime | None, actor: str
) -> Conversation:
    # locked: two requests resolving (or reopening) it at once must not both move the agent's counter
    conversation = get_conversation(session, conversation_id, for_update=True)
    if status not in STATUSES:
        raise ValidationFailed.on_field("status", f"must be one of: {', '.join(STATUSES)}")
    if status == conversation.status and status != "snoozed":
        raise Conflict(f"the conversation is already {status}")
    if status not in TRANSITIONS[conversation.status] and status != conversation.status:
        raise Conflict(f"a {conversation.status} conversation cannot become {status}; reopen it first")
    now = utcnow()
    if status == "snoozed":
        if snooze_until is None:
            raise ValidationFailed.on_field("snooze_until", "a snoozed conversation needs a time to wake up")
        if snooze_until.tzinfo is None or snooze_until <= now:
            raise ValidationFailed.on_field("snooze_until", "must be a future time with a timezone")
        conversation.snooze_until = snooze_until
    elif snooze_until is not None:
        raise ValidationFailed.on_field("snooze_until", "only goes with status snoozed")
    else:
        conversation.snooze_until = None
    previous = conversation.status
    conversation.status = status
    conversation.updated_at = now
    if status == "resolved":
        conversation.resolved_at = now
        routing.release(session, conversation)
    elif previous == "resolved":
        conversation.resolved_at = None
        conversation.reopened_count += 1
        if conversation.assignee_id is not None:
            routing.take_slot(session, conversation.assignee_id, force=True)
    session.flush()
    announce(session, f"conversation.{status}", conversation_data(conversation) | {"actor": actor})
    if status == "resolved" and conversation.assignee_id is not None:
        announce_assigned(session, routing.drain_queue(session, conversation.assignee_id), actor="routing")
    return conversation


def wake_snoozed(session: Session, *, now: datetime | None = None) -> int:
    """Snoozed conversations whose time has come are open again (run by the worker)."""
    now = now or utcnow()
    woken = 0
    for conversation in session.scalars(
        select(Conversation).where(Conversation.status == "snoozed", Conversation.snooze_until <= now)
    ):
        conversation.status = "open"
        conversation.snooze_until = None
        conversation.updated_at = now
        announce(session, "conversation.open", conversation_data(conversation) | {"actor": "system:snooze"})
        woken += 1
    return woken


def assign(
    session: Session, *, conversation_id: uuid.UUID, agent_id: uuid.UUID | None, team_id: uuid.UUID | None,
    actor: str,
) -> Conversation:  # fmt: skip
    if (agent_id is None) == (team_id is None):
        raise ValidationFailed.on_field("agent_id", "give exactly one of agent_id or team_id")
    conversation = get_conversation(session, conversation_id, for_update=True)
    if agent_id is not None:
        agent = session.get(StaffUser, agent_id)
        if agent is None or not agent.active:
            raise ValidationFailed.on_field("agent_id", f"no active staff user {agent_id}")
        from omnicanal.routing.models import AgentProfile

        if session.get(AgentProfile, agent_id) is None:
            session.add(AgentProfile(user_id=agent_id))
            session.flush()
        routing.reassign_to_agent(session, conversation, agent_id)
    else:
        team = session.get(Team, team_id)
        if team is None:
            raise ValidationFailed.on_field("team_id", f"no team {team_id}")
        routing.requeue_to_team(session, conversation, team)
    conversation.updated_at = utcnow()
    session.flush()
    announce(session, "conversation.assigned", conversation_data(conversation) | {"actor": actor})
    return conversation


def update(
    session: Session, *, conversation_id: uuid.UUID, priority: str | None, labels: list[str] | None
) -> Conversation:
    conversation = get_conversation(session, conversation_id)
    if priority is not None:
        conversation.priority = priority
    if labels is not None:
        cleaned = sorted({label.strip().lower() for label in labels if label.strip()})
        if any(len(label) > 50 for label in cleaned):
            raise ValidationFailed.on_field("labels", "a label has at most 50 characters")
        conversation.labels = cleaned
    conversation.updated_at = utcnow()
    session.flush()
    announce(session, "conversation.updated", conversation_data(conversation) | {"labels": conversation.labels})
    return conversation


_STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


def update_delivery_status(
    session: Session, *, message_id: uuid.UUID | None = None, provider_message_id: str | None = None,
    status: str, reason: str | None = None,
) -> Message | None:  # fmt: skip
    """Provider callbacks: status only moves forward (a late "delivered" never undoes "read")."""
    if status not in (*_STATUS_RANK, "failed"):
        raise ValidationFailed.on_field("status", "must be queued, sent, delivered, read or failed")
    stmt = select(Message)
    if message_id is not None:
        stmt = stmt.where(Message.id == message_id)
    elif provider_message_id is not None:
        stmt = stmt.where(Message.provider_message_id == provider_message_id)
    else:
        raise ValidationFailed.on_field("message_id", "give a message id or a provider message id")
    message = session.scalar(stmt)
    if message is None:
        return None
    if status == "failed":
        if message.status == "read":
            return message
        message.failure_reason = reason or "the provider reported a failure"
    elif _STATUS_RANK.get(message.status, -1) >= _STATUS_RANK[status]:
        return message
    message.status = status
    message.updated_at = utcnow()
    session.flush()
    event = "message.failed" if status == "failed" else f"message.{status}"
    announce(session, event, message_data(message) | {"failure_reason": message.failure_reason})
    return message


def outbound_sent(session: Session, item: Any) -> None:
    """Outbox outcome: the provider accepted the message."""
    if item.message_id is None:
        return
    batch: _OutboundBatch | None = session.info.get(_OUTBOUND)
    row = batch.rows.get(item.message_id) if batch is not None else None
    if row is not None and session.identity_map.get(identity_key(Message, item.message_id)) is None:
        assert batch is not None
        # the same rules as below, on the batch's copy of the row, written by outbound_written
        if row["provider_message_id"] is None:
            row["provider_message_id"] = item.provider_id
            batch.changed[item.message_id] = row
        if row["status"] in ("queued", "failed"):
            row |= {"status": "sent", "failure_reason": None, "updated_at": utcnow()}
            batch.changed[item.message_id] = row
            announce(session, "message.sent", {name: _as_data(name, row[name]) for name in _MESSAGE_DATA})
        return
    message = session.get(Message, item.message_id)
    if message is None:
        return
    if message.provider_message_id is None:
        message.provider_message_id = item.provider_id
    # "failed" too: a dead-lettered message that a supervisor retried and that then went out
    if message.status in ("queued", "failed"):
        message.status = "sent"
        message.failure_reason = None
        message.updated_at = utcnow()
        announce(session, "message.sent", message_data(message))


_OUTBOUND = "omnicanal.outbound_messages"
# what notify.message_data gives, in its order
_MESSAGE_DATA = ("id", "conversation_id", "customer_id", "channel", "direction", "sender_type", "sender_id", "text",
                 "private", "status", "created_at")  # fmt: skip
_messages = cast(Table, Message.__table__)
_OUTBOUND_ROWS = select(
    *(_messages.c[name] for name in _MESSAGE_DATA), _messages.c.provider_message_id, _messages.c.failure_reason,
    _messages.c.updated_at,
).where(_messages.c.id.in_(bindparam("ids", expanding=True)))  # fmt: skip


def _as_data(name: str, value: Any) -> Any:
    if name == "created_at":
        return value.isoformat()
    if name in ("id", "conversation_id", "customer_id"):
        return str(value)
    return value


@dataclass
class _OutboundBatch:
    """The messages of a batch of outbox outcomes, read with Core; the rows the handlers changed."""

    rows: dict[uuid.UUID, dict[str, Any]]
    changed: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)


def outbound_messages(session: Session, items: list[Any]) -> _OutboundBatch:
    """The messages of a batch of outbox outcomes, read at once for :func:`outbound_sent` (bench, C4: no ORM
    objects; :func:`outbound_written` stores what the handlers changed in one statement)."""
    ids = sorted({item.message_id for item in items if item.kind == "message" and item.message_id is not None})
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        for row in session.connection().execute(_OUTBOUND_ROWS, {"ids": ids[start : start + 500]}).mappings():
            rows[row["id"]] = dict(row)
    batch = session.info[_OUTBOUND] = _OutboundBatch(rows)
    return batch


def outbound_written(session: Session) -> None:
    """Store the messages the outcome handlers of the batch changed (see :func:`outbound_messages`)."""
    batch: _OutboundBatch | None = session.info.pop(_OUTBOUND, None)
    if batch is None or not batch.changed:
        return
    bulk_update(
        session,
        Message,
        "id",
        [
            {"provider_message_id": row["provider_message_id"], "status": row["status"],
             "failure_reason": row["failure_reason"], "updated_at": row["updated_at"], "id": message_id}
            for message_id, row in batch.changed.items()
        ],
    )  # fmt: skip


def outbound_dead(session: Session, item: Any) -> None:
    if item.message_id is not None:
        if _OUTBOUND in session.info:
            outbound_written(session)  # what the batch changed so far, before the ORM reads the message
        update_delivery_status(session, message_id=item.message_id, status="failed", reason=item.last_error)
