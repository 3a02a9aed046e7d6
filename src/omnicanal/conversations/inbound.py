"""Taking in customer messages from any channel: resolve, thread, persist, route, announce.

Works on a batch (the ingest writer coalesces concurrent requests), with one lookup each for
known messages, identities, open conversations and customer traits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from omnicanal.conversations.models import Conversation, Message
from omnicanal.conversations.notify import announce, conversation_data
from omnicanal.customers.models import Customer
from omnicanal.customers.resolution import Resolver
from omnicanal.db import bulk_insert, utcnow, uuid7
from omnicanal.errors import DomainError
from omnicanal.routing import service as routing
from omnicanal.settings import Settings
from omnicanal.timeline.models import Event

log = logging.getLogger(__name__)


@dataclass
class InboundInput:
    channel: str
    identities: list[tuple[str, str]]
    customer_id: uuid.UUID | None
    text: str
    attachments: list[dict[str, Any]]
    external_id: str
    occurred_at: datetime
    channel_instance_id: uuid.UUID | None = None  # the configured channel it came in on
    # False for automatic replies (out-of-office, ...): kept in the customer's conversation, which they
    # never reopen nor start
    reopens: bool = True


@dataclass
class InboundResult:
    message_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    duplicate: bool = False
    error: DomainError | None = None
    new_conversation: bool = False
    dropped: bool = False  # an automatic reply with no conversation to join


def _known_messages(session: Session, items: Sequence[InboundInput]) -> dict[tuple[str, str], InboundResult]:
    known: dict[tuple[str, str], InboundResult] = {}
    external_ids = sorted({item.external_id for item in items})
    # Both columns of uq_messages_channel_external_id: with the external ids alone the lookup cannot use
    # the index and reads every message (bench, C1).
    channels = sorted({item.channel for item in items})
    for start in range(0, len(external_ids), 500):
        rows = session.execute(
            select(
                Message.channel, Message.external_id, Message.id, Message.conversation_id, Message.customer_id
            ).where(Message.channel.in_(channels), Message.external_id.in_(external_ids[start : start + 500]))
        )
        for channel, external_id, message_id, conversation_id, customer_id in rows:
            if external_id is not None:
                known[(channel, external_id)] = InboundResult(message_id, conversation_id, customer_id, duplicate=True)
    return known


def _threads(session: Session, customers: set[uuid.UUID], *, reopen_after: datetime) -> dict[uuid.UUID, Conversation]:
    """Per customer: the open conversation, else the one resolved recently enough to reopen."""
    chosen: dict[uuid.UUID, Conversation] = {}
    if not customers:
        return chosen
    stmt = (
        select(Conversation)
        .where(
            Conversation.customer_id.in_(customers),
            or_(Conversation.status != "resolved", Conversation.resolved_at >= reopen_after),
        )
        .order_by(Conversation.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Two processes taking in a new customer's first messages at once must not open two
        # conversations: one holds the customer's advisory lock until it commits.
        for key in sorted(int.from_bytes(c.bytes[:8], "big", signed=True) for c in customers):
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        # An agent resolving it right now must not leave this message in a resolved conversation (nor
        # both of us move the agent's counter). Locked in id order; a deadlock retries the batch.
        stmt = stmt.with_for_update()
    rows = sorted(session.scalars(stmt), key=lambda c: c.last_message_at, reverse=True)
    for conversation in rows:
        current = chosen.get(conversation.customer_id)
        if current is None or (current.status == "resolved" and conversation.status != "resolved"):
            chosen[conversation.customer_id] = conversation
    return chosen


def _follow(merged: dict[uuid.UUID, uuid.UUID], customer_id: uuid.UUID) -> uuid.UUID:
    seen = set()
    while customer_id in merged and customer_id not in seen:
        seen.add(customer_id)
        customer_id = merged[customer_id]
    return customer_id


def receive(session: Session, items: Sequence[InboundInput], *, settings: Settings) -> list[InboundResult]:
    now = utcnow()
    known = _known_messages(session, items)
    resolver = Resolver(session, settings, now=now)
    resolver.prefetch(key for item in items for key in item.identities)

    results: list[InboundResult] = []
    merged: dict[uuid.UUID, uuid.UUID] = {}
    fresh: list[tuple[InboundInput, InboundResult]] = []
    repeats: list[tuple[InboundResult, InboundResult]] = []  # (repeat, first) within this batch
    seen: dict[tuple[str, str], InboundResult] = {}
    for item in items:
        key = (item.channel, item.external_id)
        if key in known:
            results.append(known[key])
            continue
        if key in seen:
            repeat = InboundResult(duplicate=True)
            results.append(repeat)
            repeats.append((repeat, seen[key]))
            continue
        try:
            resolution = resolver.resolve(
                item.identities, customer_id=item.customer_id, source=item.channel, event_id=None
            )
        except DomainError as exc:
            results.append(InboundResult(error=exc))
            continue
        for loser in resolution.merged:
            merged[loser] = resolution.customer_id
        result = InboundResult(customer_id=resolution.customer_id)
        results.append(result)
        seen[key] = result
        fresh.append((item, result))
    resolver.flush()

    for _, result in fresh:
        assert result.customer_id is not None
        result.customer_id = _follow(merged, result.customer_id)
    customers = {result.customer_id for _, result in fresh if result.customer_id is not None}
    threads = _threads(session, customers, reopen_after=now - timedelta(seconds=settings.reopen_window_seconds))
    traits: dict[uuid.UUID, dict[str, Any]] = {
        customer_id: found
        for customer_id, found in session.execute(
            select(Customer.id, Customer.traits).where(Customer.id.in_(customers))
        )
    }

    events: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    stored: list[tuple[InboundResult, dict[str, Any]]] = []
    started: list[tuple[InboundInput, Conversation, str | None]] = []
    opened: set[uuid.UUID] = set()
    touched: dict[uuid.UUID, str] = {}  # existing conversation -> channel of its last message in this batch
    for item, result in fresh:
        assert result.customer_id is not None
        conversation = threads.get(result.customer_id)
        if conversation is None and not item.reopens:
            result.dropped = True
            continue
        if conversation is None:
            customer_traits = traits.get(result.customer_id) or {}
            conversation = _open(session, item, result.customer_id, customer_traits, now=now)
            threads[result.customer_id] = conversation
            result.new_conversation = True
            attributes = customer_traits.get("attributes") or {}
            started.append((item, conversation, attributes.get("tier") if isinstance(attributes, dict) else None))
            opened.add(conversation.id)
        elif item.reopens:
            _continue(session, conversation, now=now)
        message_id = uuid7()
        messages.append(
            {
                "id": message_id, "conversation_id": conversation.id, "customer_id": result.customer_id,
                "source_customer_id": result.customer_id, "channel": item.channel, "direction": "inbound",
                "sender_type": "customer", "sender_id": None, "text": item.text, "attachments": item.attachments,
                "private": False, "mentions": [], "external_id": item.external_id,
                "channel_instance_id": item.channel_instance_id, "status": "received",
                "occurred_at": item.occurred_at, "created_at": now, "updated_at": now,
            }
        )  # fmt: skip
        if conversation.id in opened:
            conversation.last_channel = item.channel
            conversation.last_message_at = now
            conversation.last_inbound_at = now
            conversation.updated_at = now
        else:
            # Stored by one executemany after the loop; the object shows the values without the ORM
            # flushing each conversation (bench, C1).
            for name, value in (("last_channel", item.channel), ("last_message_at", now),
                                ("last_inbound_at", now), ("updated_at", now)):  # fmt: skip
                set_committed_value(conversation, name, value)
            touched[conversation.id] = item.channel
        result.message_id = message_id
        stored.append((result, messages[-1]))
        result.conversation_id = conversation.id
        message_hex = message_id.hex
        events.append(
            {
                "event_id": f"msg_{message_hex}",
                "customer_id": result.customer_id,
                "source_customer_id": result.customer_id,
                "type": "message.received",
                "channel": item.channel,
                "occurred_at": item.occurred_at,
                "received_at": now,
                "properties": {
                    "conversation_id": str(conversation.id),
                    "message_id": str(message_id),
                    "text": item.text[:280],
                    "attachments": len(item.attachments),
                },
            }
        )
    batch = routing.BatchRouting(session)
    if started:
        # After the loop and without autoflush: routing reads rules and agents once for the whole batch,
        # instead of flushing the batch's pending rows piecemeal before each of its queries.
        with session.no_autoflush:
            for item, conversation, tier in started:
                routing.route_new(
                    session, conversation, channel=item.channel, text=item.text, tier=tier, now=now, batch=batch
                )
    bulk_insert(session, Message, messages)  # flushes the conversations first (messages refer to them)
    if touched:
        session.connection().execute(
            _TOUCH,
            [{"conversation_id": cid, "channel": channel, "now": now} for cid, channel in touched.items()],
        )
    bulk_insert(session, Event, events)
    for repeat, first in repeats:
        repeat.message_id, repeat.conversation_id = first.message_id, first.conversation_id
        repeat.customer_id = first.customer_id
    created_at = now.isoformat()
    for result, row in stored:
        assert result.customer_id is not None
        conversation = threads[result.customer_id]
        about = conversation_data(conversation)
        # what notify.message_data gives for this row, without reading it back
        data = {
            "id": str(row["id"]), "conversation_id": about["id"], "customer_id": str(row["customer_id"]),
            "channel": row["channel"], "direction": "inbound", "sender_type": "customer", "sender_id": None,
            "text": row["text"], "private": False, "status": "received", "created_at": created_at,
            "conversation": about,
        }  # fmt: skip
        announce(session, "message.received", data)
        if result.new_conversation:
            announce(session, "conversation.created", conversation_data(conversation))
            if conversation.assignee_id is not None:
                announce(session, "conversation.assigned", conversation_data(conversation) | {"actor": "routing"})
            _out_of_hours_reply(session, conversation, now=now, batch=batch)
    return results


_conversations = cast(Table, Conversation.__table__)
_TOUCH = (
    update(_conversations)
    .where(_conversations.c.id == bindparam("conversation_id"))
    .values(
        last_channel=bindparam("channel"),
        last_message_at=bindparam("now"),
        last_inbound_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)


def _open(session: Session, item: InboundInput, customer_id: uuid.UUID, traits: dict[str, Any], *,
          now: datetime) -> Conversation:  # fmt: skip
    """A new conversation, routed later with the rest of its batch."""
    conversation = Conversation(
        id=uuid7(), customer_id=customer_id, source_customer_id=customer_id, status="open",
        language=traits.get("language"), last_channel=item.channel, last_message_at=now, created_at=now,
        updated_at=now, labels=[], priority="normal", reopened_count=0,
    )  # fmt: skip
    session.add(conversation)
    return conversation


def _continue(session: Session, conversation: Conversation, *, now: datetime) -> None:
    if conversation.status == "resolved":
        conversation.status = "open"
        conversation.resolved_at = None
        conversation.reopened_count += 1
        if conversation.assignee_id is not None:
            routing.take_slot(session, conversation.assignee_id, force=True)
        announce(session, "conversation.open", conversation_data(conversation) | {"actor": "customer"})
    elif conversation.status in ("pending", "snoozed"):
        conversation.status = "open"
        conversation.snooze_until = None
        announce(session, "conversation.open", conversation_data(conversation) | {"actor": "customer"})


def _out_of_hours_reply(
    session: Session, conversation: Conversation, *, now: datetime, batch: routing.BatchRouting
) -> None:
    from omnicanal.conversations.service import reply

    if conversation.team_id is None:
        return
    team = batch.team(conversation.team_id)
    if team is None or not team.out_of_hours_reply or routing.is_within_business_hours(team, now):
        return
    try:
        reply(
            session, conversation_id=conversation.id, text=team.out_of_hours_reply, channel=None, private=False,
            author_type="bot", author_id="out-of-hours",
        )  # fmt: skip
    except DomainError as exc:
        log.info("no out-of-hours reply for conversation %s: %s", conversation.id, exc.detail)
