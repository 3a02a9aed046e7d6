"""Conversations: reading one, replying on any channel, work states and assignment.

The inbox listing is in ``inbox.py``; what happens to a sent message (outbox outcomes, delivery
statuses) in ``delivery.py``.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from omnicanal.access.models import StaffUser
from omnicanal.conversations.channels import CHANNEL_RULES, ReplyOption, reply_options
from omnicanal.conversations.models import Conversation, Message
from omnicanal.conversations.notify import announce, announce_assigned, conversation_data, message_data
from omnicanal.conversations.reply_content import check_reply_content, interactive_record
from omnicanal.conversations.schemas import MessageOut
from omnicanal.customers.models import Identity
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.outbox.service import enqueue
from omnicanal.pagination import check_limit, decode_time_id_cursor, encode_cursor
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


def message_out(message: Message) -> MessageOut:
    return MessageOut.model_validate(message, from_attributes=True)


def edit_received(session: Session, *, channel: str, external_id: str, text: str) -> Message | None:
    """The customer changed the text of a message already received (a channel that allows edits); None when
    the message is not stored, and then the edit is taken in as the message itself."""
    message = session.scalar(select(Message).where(Message.channel == channel, Message.external_id == external_id))
    if message is None:
        return None
    if message.direction == "inbound" and message.text != text:
        now = utcnow()
        message.text, message.edited_at, message.updated_at = text, now, now
        session.flush()
        announce(session, "message.updated", message_data(message) | {"edited_at": now.isoformat()})
    return message


def list_messages(
    session: Session, *, conversation_id: uuid.UUID, limit: int = 100, cursor: str | None = None
) -> tuple[list[Message], str | None]:
    """Oldest first, every channel interleaved in time."""
    get_conversation(session, conversation_id)
    limit = check_limit(limit)
    stmt = select(Message).where(Message.conversation_id == conversation_id)
    after = decode_time_id_cursor(cursor)
    if after is not None:
        when, last_id = after
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


def default_reply_channel(session: Session, conversation: Conversation) -> str | None:
    """Where a reply goes when the agent picks no channel: the channel the customer last wrote on.

    A call or a store visit is not writing: after one, the last channel that carries text replies.
    """
    last = conversation.last_channel
    rule = CHANNEL_RULES.get(last) if last is not None else None
    if rule is None or rule.text_replies:
        return last
    writing = [name for name, known in CHANNEL_RULES.items() if known.text_replies]
    found = session.scalar(
        select(Message.channel)
        .where(Message.conversation_id == conversation.id, Message.direction == "inbound",
               Message.channel.in_(writing))
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    )  # fmt: skip
    return found or last


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

    target = channel or default_reply_channel(session, conversation)
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
        team = session.get(Team, conversation.team_id) if conversation.team_id is not None else None
        routing.restart_resolution_clock(conversation, team, now=now)
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
    previous = conversation.assignee_id
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
    if previous is not None and previous != conversation.assignee_id and conversation.status != "resolved":
        # the previous agent has a free slot now: their teams' queue moves to them, as after a resolution
        announce_assigned(session, routing.drain_queue(session, previous), actor="routing")
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
