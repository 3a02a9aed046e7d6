"""The customer 360 read: profile, identities, consents and the newest events, in one place."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from omnicanal.consent.schemas import ConsentOut
from omnicanal.consent.service import current_consents
from omnicanal.customers.schemas import CustomerOut, MergeRecord
from omnicanal.customers.service import customer_out, get_customer, merges_of
from omnicanal.timeline.schemas import EventOut
from omnicanal.timeline.service import event_out, timeline


class Customer360(BaseModel):
    customer: CustomerOut
    consents: list[ConsentOut]
    events: list[EventOut]
    events_next_cursor: str | None
    merges: list[MergeRecord]


def customer_360(session: Session, *, customer_id: uuid.UUID, events: int = 50) -> Customer360:
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
