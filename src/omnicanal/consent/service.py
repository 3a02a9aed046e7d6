"""Consent per customer, channel and purpose, and the one answer to "may we contact them"."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal import dispatch
from omnicanal.consent.models import ConsentChange
from omnicanal.consent.schemas import ConsentChannel, ConsentIn, ConsentOut, ConsentPurpose, ConsentStatus
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow
from omnicanal.errors import ValidationFailed
from omnicanal.timeline.schemas import EVENT_CHANNELS
from omnicanal.timeline.service import record_event


def _check(channel: str, purpose: str) -> tuple[ConsentChannel, ConsentPurpose]:
    try:
        checked_channel = ConsentChannel(channel)
    except ValueError:
        allowed = ", ".join(c.value for c in ConsentChannel)
        raise ValidationFailed.on_field("channel", f"unknown consent channel {channel!r}; one of: {allowed}") from None
    try:
        checked_purpose = ConsentPurpose(purpose)
    except ValueError:
        allowed = ", ".join(p.value for p in ConsentPurpose)
        raise ValidationFailed.on_field("purpose", f"unknown purpose {purpose!r}; one of: {allowed}") from None
    return checked_channel, checked_purpose


def set_consent(
    session: Session, *, customer_id: uuid.UUID, channel: str, purpose: str, change: ConsentIn, actor: str
) -> ConsentChange:
    checked_channel, checked_purpose = _check(channel, purpose)
    if change.source not in EVENT_CHANNELS:
        raise ValidationFailed.on_field(
            "source", f"unknown source channel {change.source!r}; one of: {', '.join(sorted(EVENT_CHANNELS))}"
        )
    customer = get_customer(session, customer_id)
    previous = _latest(session, customer.id, checked_channel, checked_purpose)
    now = utcnow()
    record = ConsentChange(
        customer_id=customer.id,
        source_customer_id=customer.id,
        channel=checked_channel.value,
        purpose=checked_purpose.value,
        status=change.status.value,
        source=change.source,
        proof=change.proof,
        changed_at=now,
        changed_by=actor,
    )
    session.add(record)
    session.flush()
    record_event(
        session,
        customer_id=customer.id,
        type=f"consent.{change.status.value}",
        channel=change.source,
        properties={
            "channel": checked_channel.value,
            "purpose": checked_purpose.value,
            "previous_status": previous.status if previous else None,
        },
        occurred_at=now,
    )
    dispatch.publish(
        session,
        "consent.changed",
        {
            "customer_id": customer.id,
            "channel": checked_channel.value,
            "purpose": checked_purpose.value,
            "status": change.status.value,
            "previous_status": previous.status if previous else None,
        },
    )
    return record


def _latest(session: Session, customer_id: uuid.UUID, channel: str, purpose: str) -> ConsentChange | None:
    return session.scalar(
        select(ConsentChange)
        .where(
            ConsentChange.customer_id == customer_id,
            ConsentChange.channel == channel,
            ConsentChange.purpose == purpose,
        )
        .order_by(ConsentChange.changed_at.desc(), ConsentChange.id.desc())
        .limit(1)
    )


def current_consents(session: Session, *, customer_id: uuid.UUID) -> list[ConsentOut]:
    """The latest status for every channel and purpose the customer has ever answered."""
    rows = session.scalars(
        select(ConsentChange)
        .where(ConsentChange.customer_id == customer_id)
        .order_by(ConsentChange.changed_at, ConsentChange.id)
    )
    latest: dict[tuple[str, str], ConsentChange] = {}
    for row in rows:
        latest[(row.channel, row.purpose)] = row
    return [
        ConsentOut(
            channel=row.channel,
            purpose=row.purpose,
            status=row.status,
            source=row.source,
            proof=row.proof,
            changed_at=row.changed_at,
            changed_by=row.changed_by,
        )
        for _, row in sorted(latest.items())
    ]


def may_contact(session: Session, *, customer_id: uuid.UUID, channel: str, purpose: str) -> bool:
    """May we contact this customer on this channel for this purpose now?

    Only an explicit, current grant says yes: no answer, a denial or a withdrawal say no.
    A merged-away id answers for the customer it was merged into.
    """
    checked_channel, checked_purpose = _check(channel, purpose)
    customer = get_customer(session, customer_id, follow_merges=True)
    if customer.erased_at is not None:
        return False
    latest = _latest(session, customer.id, checked_channel, checked_purpose)
    return latest is not None and latest.status == ConsentStatus.GRANTED
