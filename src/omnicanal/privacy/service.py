"""Everything held about a customer, exported or erased.

Each domain that keeps personal data registers an exporter and an eraser here, so privacy
requests reach every table without this module knowing the later domains.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import String, and_, cast, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from omnicanal import dispatch
from omnicanal.consent.models import ConsentChange
from omnicanal.customers.merging import merge_tree
from omnicanal.customers.models import Customer, Identity, IdentityConflict, Merge
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow
from omnicanal.idempotency import IdempotentRequest
from omnicanal.owned_rows import moved
from omnicanal.timeline.models import Event

Exporter = Callable[[Session, set[uuid.UUID]], Any]
Eraser = Callable[[Session, set[uuid.UUID]], None]

_exporters: dict[str, Exporter] = {}
_erasers: list[Eraser] = []


def register(section: str, *, exporter: Exporter | None, eraser: Eraser, first: bool = False) -> None:
    """``first``: the eraser needs the customer's identities, which the foundation's eraser deletes."""
    if exporter is not None:
        _exporters[section] = exporter
    if eraser not in _erasers:
        _erasers.insert(0, eraser) if first else _erasers.append(eraser)


def _rows(session: Session, stmt: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in session.execute(stmt)]


def export_customer(session: Session, *, customer_id: uuid.UUID) -> dict[str, Any]:
    customer = get_customer(session, customer_id)
    tree = merge_tree(session, customer.id)
    document: dict[str, Any] = {
        "customer_id": customer.id,
        "exported_at": utcnow(),
        "merged_customer_ids": sorted(str(c) for c in tree - {customer.id}),
    }
    for section, exporter in _exporters.items():
        document[section] = exporter(session, tree)
    return document


def erase_customer(session: Session, *, customer_id: uuid.UUID, actor: str) -> dict[str, Any]:
    customer = get_customer(session, customer_id)
    tree = merge_tree(session, customer.id)
    for eraser in _erasers:
        eraser(session, tree)
    dispatch.publish(session, "customer.erased", {"customer_id": customer.id, "actor": actor})
    return {"customer_id": customer.id, "erased_customers": len(tree), "erased_at": utcnow()}


# -- the foundation's own tables --------------------------------------------------------


def _export_profile(session: Session, tree: set[uuid.UUID]) -> Any:
    return _rows(
        session,
        select(Customer.id, Customer.traits, Customer.created_at, Customer.updated_at, Customer.merged_into_id).where(
            Customer.id.in_(tree)
        ),
    )


def _export_identities(session: Session, tree: set[uuid.UUID]) -> Any:
    return _rows(
        session,
        select(Identity.type, Identity.value, Identity.source, Identity.source_event_id, Identity.added_at).where(
            Identity.customer_id.in_(tree)
        ),
    )


def _export_events(session: Session, tree: set[uuid.UUID]) -> Any:
    return _rows(
        session,
        select(Event.event_id, Event.type, Event.channel, Event.occurred_at, Event.received_at, Event.properties)
        .where(Event.customer_id.in_(tree))
        .order_by(Event.occurred_at, Event.seq),
    )


def _export_consents(session: Session, tree: set[uuid.UUID]) -> Any:
    return _rows(
        session,
        select(
            ConsentChange.channel, ConsentChange.purpose, ConsentChange.status, ConsentChange.source,
            ConsentChange.proof, ConsentChange.changed_at,
        )
        .where(ConsentChange.customer_id.in_(tree))
        .order_by(ConsentChange.changed_at),
    )  # fmt: skip


def _export_merges(session: Session, tree: set[uuid.UUID]) -> Any:
    return _rows(
        session,
        select(Merge.id, Merge.survivor_id, Merge.merged_id, Merge.reason, Merge.created_at, Merge.undone_at).where(
            or_(Merge.survivor_id.in_(tree), Merge.merged_id.in_(tree))
        ),
    )


def _erase_foundation(session: Session, tree: set[uuid.UUID]) -> None:
    now = utcnow()
    moved_from_tree = and_(Identity.source_customer_id.in_(tree), moved(Identity.__table__))
    session.execute(delete(Identity).where(or_(Identity.customer_id.in_(tree), moved_from_tree)))
    session.execute(delete(IdempotentRequest).where(IdempotentRequest.customer_id.in_(tree)))
    session.execute(
        delete(IdentityConflict).where(
            or_(IdentityConflict.customer_id.in_(tree), IdentityConflict.other_customer_id.in_(tree))
        )
    )
    session.execute(
        update(Merge)
        .where(or_(Merge.survivor_id.in_(tree), Merge.merged_id.in_(tree)))
        .values(state_before={}, traits_added={}, trigger="erased")
    )
    # Events stay as anonymous counts (type, channel, time); what they said goes, and so do
    # sender-chosen ids, which may embed an identifier.
    session.execute(
        update(Event)
        .where(Event.customer_id.in_(tree))
        .values(event_id=literal("erased_") + cast(Event.seq, String), properties={})
    )
    session.execute(
        update(ConsentChange).where(ConsentChange.customer_id.in_(tree)).values(proof="", changed_by="erased")
    )
    session.execute(
        update(Customer).where(Customer.id.in_(tree)).values(traits={}, search_name=None, erased_at=now, updated_at=now)
    )


def erased_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Customer).where(Customer.erased_at.is_not(None))) or 0


register("profile", exporter=_export_profile, eraser=_erase_foundation)
register("identities", exporter=_export_identities, eraser=_erase_foundation)
register("events", exporter=_export_events, eraser=_erase_foundation)
register("consents", exporter=_export_consents, eraser=_erase_foundation)
register("merges", exporter=_export_merges, eraser=_erase_foundation)
