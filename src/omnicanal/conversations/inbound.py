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
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from omnicanal.conversations.models import Conversation, Message
from omnicanal.conversations.notify import announce, announce_all, conversation_data
from omnicanal.customers.resolution import Resolver
from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import (
    bulk_insert,
    bulk_update,
    datetime_to_db,
    driver_rows,
    held_objects,
    is_sqlite,
    json_from_db,
    uuid_from_db,
    uuid_to_db,
)
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


# The batch's statements run on the driver connection of the session's transaction (driver_sql.driver_rows), as the
# event ingest does: SQLAlchemy's compiling, parameter processing and result processing per statement cost
# more than the statements (bench, C1).
_KNOWN = (
    # Both columns of uq_messages_channel_external_id: with the external ids alone the lookup cannot use
    # the index and reads every message (bench, C1).
    "SELECT channel, external_id, id, conversation_id, customer_id FROM messages "
    "WHERE channel IN ({channels}) AND external_id IN ({external_ids})"
)
_THREADS = (
    "SELECT id, customer_id, status, assignee_id, team_id, priority, language, last_channel, last_message_at, "
    "resolved_at, reopened_count, first_response_at FROM conversations "
    "WHERE customer_id IN ({customers}) AND (status != 'resolved' OR resolved_at >= ?) ORDER BY id"
)
_TRAITS = "SELECT id, traits FROM customers WHERE id IN ({customers})"
_ADVISORY_LOCK = "SELECT pg_advisory_xact_lock(?)"


def _marks(count: int) -> str:
    return ", ".join("?" * count)


@dataclass(slots=True)
class _Thread:
    """The conversation a batch writes to, as plain values: read with Core and written with
    ``executemany``, never an ORM object flushed one by one (bench, C1)."""

    id: uuid.UUID
    customer_id: uuid.UUID
    status: str
    assignee_id: uuid.UUID | None
    team_id: uuid.UUID | None
    priority: str
    language: str | None
    last_channel: str | None
    # Stored ones as the driver returns them (text on SQLite, which sorts like the time): only compared with
    # each other to pick the latest conversation, never written back.
    last_message_at: Any
    resolved_at: Any
    reopened_count: int
    first_response_at: Any
    new: bool = False
    last_inbound_at: datetime | None = None
    snooze_until: datetime | None = None
    first_response_due_at: datetime | None = None
    resolution_due_at: datetime | None = None


def _known_messages(session: Session, items: Sequence[InboundInput]) -> dict[tuple[str, str], InboundResult]:
    known: dict[tuple[str, str], InboundResult] = {}
    external_ids = sorted({item.external_id for item in items})
    channels = sorted({item.channel for item in items})
    for start in range(0, len(external_ids), 500):
        chunk = external_ids[start : start + 500]
        sql = _KNOWN.format(channels=_marks(len(channels)), external_ids=_marks(len(chunk)))
        for channel, external_id, message_id, conversation_id, customer_id in driver_rows(
            session, sql, [*channels, *chunk]
        ):
            if external_id is not None:
                known[(channel, external_id)] = InboundResult(
                    uuid_from_db(message_id), uuid_from_db(conversation_id), uuid_from_db(customer_id), duplicate=True
                )
    return known


def _threads(session: Session, customers: set[uuid.UUID], *, reopen_after: datetime) -> dict[uuid.UUID, _Thread]:
    """Per customer: the open conversation, else the one resolved recently enough to reopen."""
    chosen: dict[uuid.UUID, _Thread] = {}
    if not customers:
        return chosen
    sqlite = is_sqlite(session)
    sql = _THREADS.format(customers=_marks(len(customers)))
    if not sqlite:
        # Two processes taking in a new customer's first messages at once must not open two
        # conversations: one holds the customer's advisory lock until it commits.
        for key in sorted(int.from_bytes(c.bytes[:8], "big", signed=True) for c in customers):
            driver_rows(session, _ADVISORY_LOCK, [key])
        # An agent resolving it right now must not leave this message in a resolved conversation (nor
        # both of us move the agent's counter). Locked in id order; a deadlock retries the batch.
        sql += " FOR UPDATE"
    by_key = {uuid_to_db(customer_id, sqlite=sqlite): customer_id for customer_id in customers}
    rows = driver_rows(session, sql, [*by_key, datetime_to_db(reopen_after, sqlite=sqlite)])
    found = [
        _Thread(
            uuid_from_db(cid), by_key[customer], status, None if assignee is None else uuid_from_db(assignee),
            None if team is None else uuid_from_db(team), priority, language, last_channel, last_message_at,
            resolved_at, reopened_count, first_response_at,
        )
        for (cid, customer, status, assignee, team, priority, language, last_channel, last_message_at, resolved_at,
             reopened_count, first_response_at) in rows
    ]  # fmt: skip
    found.sort(key=lambda c: c.last_message_at, reverse=True)
    for conversation in found:
        current = chosen.get(conversation.customer_id)
        if current is None or (current.status == "resolved" and conversation.status != "resolved"):
            chosen[conversation.customer_id] = conversation
    return chosen


def _traits(session: Session, customers: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    if not customers:
        return {}
    sqlite = is_sqlite(session)
    by_key = {uuid_to_db(customer_id, sqlite=sqlite): customer_id for customer_id in customers}
    rows = driver_rows(session, _TRAITS.format(customers=_marks(len(by_key))), list(by_key))
    return {by_key[key]: json_from_db(traits) for key, traits in rows}


def _follow(merged: dict[uuid.UUID, uuid.UUID], customer_id: uuid.UUID) -> uuid.UUID:
    seen = set()
    while customer_id in merged and customer_id not in seen:
        seen.add(customer_id)
        customer_id = merged[customer_id]
    return customer_id


def receive(session: Session, items: Sequence[InboundInput], *, settings: Settings) -> list[InboundResult]:
    now = utcnow()
    session.flush()  # the batch reads through the connection: whatever the session holds goes first
    known = _known_messages(session, items)
    resolver = Resolver(session, settings, now=now)
    resolver.prefetch(key for item in items for key in item.identities)  # each WhatsApp id's phone included

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
    session.flush()  # a merge may have left ORM changes behind

    for _, result in fresh:
        assert result.customer_id is not None
        result.customer_id = _follow(merged, result.customer_id)
    customers = {result.customer_id for _, result in fresh if result.customer_id is not None}
    threads = _threads(session, customers, reopen_after=now - timedelta(seconds=settings.reopen_window_seconds))
    # Only a customer without a conversation to continue needs its traits (for the new one's language and tier).
    traits = _traits(session, [customer_id for customer_id in customers if customer_id not in threads])

    events: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    stored: list[tuple[InboundResult, dict[str, Any], _Thread, str]] = []
    conversation_keys: dict[uuid.UUID, str] = {}  # str() of a UUID is Python code: once per conversation and message
    started: list[tuple[InboundInput, _Thread, str | None]] = []
    touched: dict[uuid.UUID, str] = {}  # existing conversation -> channel of its last message in this batch
    changed: dict[uuid.UUID, tuple[str, _Thread]] = {}  # existing conversations whose status the batch changed
    for item, result in fresh:
        customer_id = result.customer_id
        assert customer_id is not None
        conversation = threads.get(customer_id)
        if conversation is None and not item.reopens:
            result.dropped = True
            continue
        if conversation is None:
            customer_traits = traits.get(customer_id) or {}
            conversation = _Thread(
                id=uuid7(), customer_id=customer_id, status="open", assignee_id=None, team_id=None,
                priority="normal", language=customer_traits.get("language"), last_channel=item.channel,
                last_message_at=now, resolved_at=None, reopened_count=0, first_response_at=None, new=True,
            )  # fmt: skip
            threads[customer_id] = conversation
            result.new_conversation = True
            attributes = customer_traits.get("attributes") or {}
            started.append((item, conversation, attributes.get("tier") if isinstance(attributes, dict) else None))
        elif item.reopens:
            _continue(session, conversation, changed)
        message_id = uuid7()
        message_key = str(message_id)
        conversation_key = conversation_keys.get(conversation.id)
        if conversation_key is None:
            conversation_key = conversation_keys[conversation.id] = str(conversation.id)
        messages.append(
            {
                "id": message_id, "conversation_id": conversation.id, "customer_id": customer_id,
                "source_customer_id": customer_id, "channel": item.channel, "direction": "inbound",
                "sender_type": "customer", "sender_id": None, "text": item.text, "attachments": item.attachments,
                "private": False, "mentions": [], "external_id": item.external_id,
                "channel_instance_id": item.channel_instance_id, "status": "received",
                "occurred_at": item.occurred_at, "created_at": now, "updated_at": now,
            }
        )  # fmt: skip
        conversation.last_channel = item.channel
        conversation.last_message_at = now
        conversation.last_inbound_at = now
        if not conversation.new:
            touched[conversation.id] = item.channel
        result.message_id = message_id
        result.conversation_id = conversation.id
        stored.append((result, messages[-1], conversation, message_key))
        events.append(
            {
                "event_id": f"msg_{message_id.hex}",
                "customer_id": customer_id,
                "source_customer_id": customer_id,
                "type": "message.received",
                "channel": item.channel,
                "occurred_at": item.occurred_at,
                "received_at": now,
                "properties": {
                    "conversation_id": conversation_key,
                    "message_id": message_key,
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
                batch.route(conversation, channel=item.channel, text=item.text, tier=tier, now=now)
            batch.finish()
        bulk_insert(session, Conversation, [_new_row(conversation, now) for _, conversation, _ in started])
    bulk_insert(session, Message, messages)  # after the conversations: messages refer to them
    bulk_update(
        session,
        Conversation,
        "id",
        [
            {"last_channel": channel, "last_message_at": now, "last_inbound_at": now, "updated_at": now, "id": cid}
            for cid, channel in touched.items()
        ],
    )
    _store_status_changes(session, changed, batch, now=now)
    bulk_insert(session, Event, events)
    _sync_loaded(session, touched, changed, now=now)
    for repeat, first in repeats:
        repeat.message_id, repeat.conversation_id = first.message_id, first.conversation_id
        repeat.customer_id = first.customer_id
    created_at = now.isoformat()
    abouts: dict[uuid.UUID, dict[str, Any]] = {}
    announcements: list[tuple[str, dict[str, Any]]] = []
    for result, row, conversation, message_key in stored:
        about = abouts.get(conversation.id)
        if about is None:
            about = abouts[conversation.id] = conversation_data(conversation)
        # what notify.message_data gives for this row, without reading it back
        data = {
            "id": message_key, "conversation_id": about["id"], "customer_id": about["customer_id"],
            "channel": row["channel"], "direction": "inbound", "sender_type": "customer", "sender_id": None,
            "text": row["text"], "private": False, "status": "received", "created_at": created_at,
            "conversation": dict(about),
        }  # fmt: skip
        announcements.append(("message.received", data))
        if result.new_conversation:
            announcements.append(("conversation.created", dict(about)))
            if conversation.assignee_id is not None:
                announcements.append(("conversation.assigned", about | {"actor": "routing"}))
            out_of_hours = _out_of_hours_text(conversation, now=now, batch=batch)
            if out_of_hours:
                announce_all(session, announcements)  # what came before the reply is announced before it
                announcements = []
                _out_of_hours_reply(session, conversation, out_of_hours)
    announce_all(session, announcements)
    return results


def _new_row(conversation: _Thread, now: datetime) -> dict[str, Any]:
    return {
        "id": conversation.id, "customer_id": conversation.customer_id,
        "source_customer_id": conversation.customer_id, "status": "open", "snooze_until": None,
        "assignee_id": conversation.assignee_id, "team_id": conversation.team_id, "priority": "normal",
        "labels": [], "language": conversation.language, "last_channel": conversation.last_channel,
        "last_message_at": now, "last_inbound_at": now, "first_response_at": None,
        "first_response_due_at": conversation.first_response_due_at,
        "resolution_due_at": conversation.resolution_due_at, "resolved_at": None, "reopened_count": 0,
        "created_at": now, "updated_at": now,
    }  # fmt: skip


def _continue(session: Session, conversation: _Thread, changed: dict[uuid.UUID, tuple[str, _Thread]]) -> None:
    if conversation.status == "resolved":
        conversation.status = "open"
        conversation.resolved_at = None
        conversation.reopened_count += 1
        if conversation.assignee_id is not None:
            routing.take_slot(session, conversation.assignee_id, force=True)
        changed[conversation.id] = ("reopened", conversation)
        announce(session, "conversation.open", conversation_data(conversation) | {"actor": "customer"})
    elif conversation.status in ("pending", "snoozed"):
        conversation.status = "open"
        conversation.snooze_until = None
        changed[conversation.id] = ("woken", conversation)
        announce(session, "conversation.open", conversation_data(conversation) | {"actor": "customer"})


def _store_status_changes(session: Session, changed: dict[uuid.UUID, tuple[str, _Thread]],
                          batch: routing.BatchRouting, *, now: datetime) -> None:  # fmt: skip
    reopened: list[dict[str, Any]] = []
    for how, conversation in changed.values():
        if how != "reopened":
            continue
        row: dict[str, Any] = {
            "status": "open", "resolved_at": None, "reopened_count": conversation.reopened_count, "id": conversation.id
        }  # fmt: skip
        team = batch.team(conversation.team_id) if conversation.team_id is not None else None
        # the resolution clock starts again: the target the conversation first had passed long ago
        if routing.restart_resolution_clock(conversation, team, now=now):
            row["resolution_due_at"] = conversation.resolution_due_at
        reopened.append(row)
    woken = [
        {"status": "open", "snooze_until": None, "id": conversation.id}
        for how, conversation in changed.values()
        if how == "woken"
    ]
    bulk_update(session, Conversation, "id", [row for row in reopened if "resolution_due_at" in row])
    bulk_update(session, Conversation, "id", [row for row in reopened if "resolution_due_at" not in row])
    bulk_update(session, Conversation, "id", woken)


def _sync_loaded(session: Session, touched: dict[uuid.UUID, str], changed: dict[uuid.UUID, tuple[str, _Thread]], *,
                 now: datetime) -> None:  # fmt: skip
    """Conversations the session already holds as objects show what the batch wrote without the ORM."""
    for held in held_objects(session, Conversation):
        if held.id not in touched:
            continue
        values: dict[str, Any] = {"last_channel": touched[held.id], "last_message_at": now, "last_inbound_at": now,
                                  "updated_at": now}  # fmt: skip
        how, conversation = changed.get(held.id, ("", None))
        if how == "reopened":
            assert conversation is not None
            values |= {"status": "open", "resolved_at": None, "reopened_count": conversation.reopened_count}
            if conversation.resolution_due_at is not None:
                values["resolution_due_at"] = conversation.resolution_due_at
        elif how == "woken":
            values |= {"status": "open", "snooze_until": None}
        for name, value in values.items():
            set_committed_value(held, name, value)


def _out_of_hours_text(conversation: _Thread, *, now: datetime, batch: routing.BatchRouting) -> str | None:
    if conversation.team_id is None:
        return None
    team = batch.team(conversation.team_id)
    if team is None or not team.out_of_hours_reply or routing.is_within_business_hours(team, now):
        return None
    return team.out_of_hours_reply


def _out_of_hours_reply(session: Session, conversation: _Thread, text: str) -> None:
    from omnicanal.conversations.service import reply

    try:
        reply(
            session, conversation_id=conversation.id, text=text, channel=None, private=False,
            author_type="bot", author_id="out-of-hours",
        )  # fmt: skip
    except DomainError as exc:
        log.info("no out-of-hours reply for conversation %s: %s", conversation.id, exc.detail)
