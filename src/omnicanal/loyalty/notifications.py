"""Loyalty news for the customer (through the outbox) and for the timeline.

A notice goes to the customer's preferred channel (attribute ``preferred_channel``) when they granted consent
on it, else to the first granted of email, SMS, WhatsApp, push; with no grant it is not sent at all.
Notices commit with the change that caused them; the outbox delivers them after commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from omnicanal.consent.models import ConsentChange
from omnicanal.customers.models import Customer
from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import bulk_insert, connection_of
from omnicanal.loyalty.queries import among
from omnicanal.outbox.models import OutboxItem
from omnicanal.realtime import wake_outbox_after_commit
from omnicanal.timeline.models import Event

if TYPE_CHECKING:
    from omnicanal.loyalty.earning import Earned

CHANNELS = ("email", "sms", "whatsapp", "push")
PURPOSE = {"reward_code": "transactional"}  # everything else is marketing


def channels_for(
    session: Session, customer_ids: Iterable[uuid.UUID], purposes: Iterable[str]
) -> dict[tuple[uuid.UUID, str], str]:
    """The channel to use for each (customer, purpose), for those who may be contacted."""
    ids = list(set(customer_ids))
    wanted = list(set(purposes))
    if not ids:
        return {}
    latest: dict[tuple[uuid.UUID, str, str], str] = {}
    for customer_id, channel, purpose, status in session.execute(
        select(ConsentChange.customer_id, ConsentChange.channel, ConsentChange.purpose, ConsentChange.status)
        .where(
            among(session, ConsentChange.customer_id, ids),
            ConsentChange.purpose.in_(wanted),
            ConsentChange.channel.in_(CHANNELS),
        )
        .order_by(ConsentChange.changed_at, ConsentChange.id)
    ):
        latest[(customer_id, channel, purpose)] = status
    ids = list({customer_id for customer_id, _, _ in latest})
    if not ids:
        return {}
    preferred: dict[uuid.UUID, str | None] = {
        cid: ((traits or {}).get("attributes") or {}).get("preferred_channel")
        for cid, traits in session.execute(select(Customer.id, Customer.traits).where(among(session, Customer.id, ids)))
    }
    found: dict[tuple[uuid.UUID, str], str] = {}
    for customer_id in ids:
        for purpose in wanted:
            order = [preferred.get(customer_id), *CHANNELS]
            for candidate in order:
                channel = candidate or ""
                if channel and latest.get((customer_id, channel, purpose)) == "granted":
                    found[(customer_id, purpose)] = channel
                    break
    return found


# One customer and purpose (a redemption's notice): statements built once, no IN lists to build.
_CONSENTS_OF_ONE = (
    select(ConsentChange.channel, ConsentChange.status)
    .where(
        ConsentChange.customer_id == bindparam("customer_id"),
        ConsentChange.purpose == bindparam("purpose"),
        ConsentChange.channel.in_(CHANNELS),
    )
    .order_by(ConsentChange.changed_at, ConsentChange.id)
)
_TRAITS_OF_ONE = select(Customer.traits).where(Customer.id == bindparam("customer_id"))


def channel_for(session: Session, customer_id: uuid.UUID, purpose: str) -> str | None:
    """What :func:`channels_for` answers for one customer and purpose."""
    connection = connection_of(session)
    latest = dict(connection.execute(_CONSENTS_OF_ONE, {"customer_id": customer_id, "purpose": purpose}).all())
    if not latest:
        return None
    traits = connection.execute(_TRAITS_OF_ONE, {"customer_id": customer_id}).scalar()
    return preferred_channel(traits, latest)


def preferred_channel(traits: Mapping[str, Any] | None, latest: Mapping[str, str]) -> str | None:
    """The customer's preferred channel if granted, else the first granted of :data:`CHANNELS`.

    ``latest``: the latest consent status per channel, for one purpose."""
    preferred = ((traits or {}).get("attributes") or {}).get("preferred_channel")
    for candidate in (preferred, *CHANNELS):
        if candidate and latest.get(candidate) == "granted":
            return str(candidate)
    return None


def notify_many(session: Session, notices: Sequence[tuple[uuid.UUID, str, Mapping[str, Any]]]) -> int:
    """Queue ``(customer_id, template, data)`` notices; returns how many could be sent."""
    if not notices:
        return 0
    purposes = {PURPOSE.get(template, "marketing") for _, template, _ in notices}
    if len(notices) == 1:
        ((customer_id, template, _),) = notices
        purpose = PURPOSE.get(template, "marketing")
        found = channel_for(session, customer_id, purpose)
        channels = {} if found is None else {(customer_id, purpose): found}
    else:
        channels = channels_for(session, [c for c, _, _ in notices], purposes)
    now = utcnow()
    rows = []
    for customer_id, template, data in notices:
        channel = channels.get((customer_id, PURPOSE.get(template, "marketing")))
        if channel is None:
            continue
        rows.append(
            {
                "id": uuid7(),
                "kind": "loyalty",
                "channel": channel,
                "state": "pending",
                "attempts": 0,
                "max_attempts": 8,
                "next_attempt_at": now,
                "created_at": now,
                "customer_id": customer_id,
                "payload": {"customer_id": str(customer_id), "template": template, "data": dict(data)},
            }
        )
    if rows:
        bulk_insert(session, OutboxItem, rows)
        wake_outbox_after_commit(session)
    return len(rows)


def timeline_many(session: Session, items: Sequence[tuple[uuid.UUID, str, Mapping[str, Any]]]) -> None:
    now = utcnow()
    rows = [
        {
            "event_id": f"oc_{uuid7().hex}",
            "customer_id": customer_id,
            "source_customer_id": customer_id,
            "type": kind,
            "channel": "system",
            "occurred_at": now,
            "received_at": now,
            "properties": dict(properties),
        }
        for customer_id, kind, properties in items
    ]
    bulk_insert(session, Event, rows)


def timeline(session: Session, customer_id: uuid.UUID, kind: str, properties: Mapping[str, Any]) -> None:
    timeline_many(session, [(customer_id, kind, properties)])


def announce_earned(session: Session, results: Sequence[Earned], *, now: datetime) -> None:
    items = [
        (r.customer_id, "loyalty.points_earned", {"points": r.points, "reason": r.reason, "source": r.source})
        for r in results
    ]
    timeline_many(session, items)
    notify_many(session, [(c, "points_earned", props) for c, _, props in items])


def notify(session: Session, customer_id: uuid.UUID, template: str, data: Mapping[str, Any]) -> bool:
    return notify_many(session, [(customer_id, template, data)]) == 1
