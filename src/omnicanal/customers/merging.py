"""Merging customers and undoing merges.

A merge points the merged customer at the survivor and re-points the ``customer_id`` of
every customer-owned row. Undo clears the pointer and gives back to the merged customer
every row whose ``source_customer_id`` lies in its own merge tree, so it is exact even when
other merges happened since.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from omnicanal import dispatch
from omnicanal.customers.models import Customer, Identity, IdentityConflict, Merge
from omnicanal.db import Base, utcnow
from omnicanal.errors import Conflict, NotFound
from omnicanal.owned_rows import moved


def search_name_for(traits: dict[str, Any]) -> str | None:
    name = " ".join(part for part in (traits.get("first_name"), traits.get("last_name")) if part)
    return name.lower() or None


def _fill_gaps(traits: dict[str, Any], donor: dict[str, Any]) -> dict[str, Any]:
    """Copy into ``traits`` what ``donor`` has and ``traits`` lacks; returns what was copied."""
    added: dict[str, Any] = {}
    for key, value in (donor or {}).items():
        if key == "attributes" and isinstance(value, dict):
            attributes = dict(traits.get("attributes") or {})
            new_attrs = {k: v for k, v in value.items() if k not in attributes}
            if new_attrs:
                attributes.update(new_attrs)
                traits["attributes"] = attributes
                added["attributes"] = new_attrs
        elif key not in traits and value not in (None, "", {}, []):
            traits[key] = value
            added[key] = value
    return added


def owned_tables() -> list[Table]:
    """Every table whose rows belong to a customer and follow merges."""
    return [
        table for table in Base.metadata.sorted_tables if "customer_id" in table.c and "source_customer_id" in table.c
    ]


def current_customer_id(session: Session, customer_id: uuid.UUID) -> uuid.UUID | None:
    """Follow merge pointers to the customer that owns this id now (None if unknown)."""
    seen: set[uuid.UUID] = set()
    current: uuid.UUID | None = customer_id
    while current is not None and current not in seen:
        seen.add(current)
        row = session.execute(select(Customer.merged_into_id).where(Customer.id == current)).first()
        if row is None:
            return None
        if row[0] is None:
            return current
        current = row[0]
    return current


def merge_tree(session: Session, root_id: uuid.UUID) -> set[uuid.UUID]:
    """The customer and every customer merged into it, directly or through others."""
    tree = {root_id}
    frontier = {root_id}
    while frontier:
        children = set(session.scalars(select(Customer.id).where(Customer.merged_into_id.in_(frontier))))
        frontier = children - tree
        tree |= frontier
    return tree


def identity_counts(session: Session, customer_id: uuid.UUID) -> Counter[str]:
    rows = session.execute(
        select(Identity.type, func.count()).where(Identity.customer_id == customer_id).group_by(Identity.type)
    )
    return Counter({kind: count for kind, count in rows})


def limit_violation(
    session: Session, survivor_id: uuid.UUID, merged_id: uuid.UUID, limits: dict[str, int]
) -> str | None:
    """Why merging these two would break a per-type identity limit, or None."""
    combined = identity_counts(session, survivor_id) + identity_counts(session, merged_id)
    for kind, limit in sorted(limits.items()):
        if combined[kind] > limit:
            return f"together they would hold {combined[kind]} {kind} identities; the limit is {limit}"
    return None


def _identities_snapshot(session: Session, customer_id: uuid.UUID) -> list[dict[str, str]]:
    rows = session.execute(
        select(Identity.type, Identity.value).where(Identity.customer_id == customer_id).order_by(Identity.type)
    )
    return [{"type": kind, "value": value} for kind, value in rows]


def merge_customers(
    session: Session,
    *,
    survivor_id: uuid.UUID,
    merged_id: uuid.UUID,
    reason: str,
    trigger: str,
) -> Merge:
    if survivor_id == merged_id:
        raise Conflict("a customer cannot be merged with itself")
    survivor = session.get(Customer, survivor_id, with_for_update=not _is_sqlite(session))
    merged = session.get(Customer, merged_id, with_for_update=not _is_sqlite(session))
    if survivor is None or merged is None:
        raise NotFound("customer not found")
    for customer in (survivor, merged):
        if customer.merged_into_id is not None:
            raise Conflict(f"customer {customer.id} was already merged into {customer.merged_into_id}")
        if customer.erased_at is not None:
            raise Conflict(f"customer {customer.id} was erased")

    state_before: dict[str, Any] = {
        "survivor": {"traits": survivor.traits, "identities": _identities_snapshot(session, survivor_id)},
        "merged": {"traits": merged.traits, "identities": _identities_snapshot(session, merged_id)},
    }
    traits = dict(survivor.traits or {})
    added = _fill_gaps(traits, merged.traits)
    now = utcnow()
    survivor.traits = traits
    survivor.search_name = search_name_for(traits)
    survivor.updated_at = now
    merged.merged_into_id = survivor_id
    merged.merged_at = now
    merged.updated_at = now
    session.flush()
    for table in owned_tables():
        session.execute(update(table).where(table.c.customer_id == merged_id).values(customer_id=survivor_id))
    record = Merge(
        survivor_id=survivor_id,
        merged_id=merged_id,
        reason=reason,
        trigger=trigger,
        state_before=state_before,
        traits_added=added,
    )
    session.add(record)
    session.flush()
    dispatch.publish(
        session,
        "customer.merged",
        {"merge_id": record.id, "survivor_id": survivor_id, "merged_id": merged_id, "reason": reason},
    )
    return record


def undo_merge(session: Session, *, merge_id: uuid.UUID, actor: str) -> Merge:
    record = session.get(Merge, merge_id)
    if record is None:
        raise NotFound(f"merge {merge_id} not found")
    if record.undone_at is not None:
        raise Conflict("this merge was already undone")
    merged = session.get(Customer, record.merged_id)
    survivor = session.get(Customer, record.survivor_id)
    assert merged is not None and survivor is not None
    if merged.erased_at is not None or survivor.erased_at is not None:
        raise Conflict("a customer of this merge was erased; the merge can no longer be undone")
    if merged.merged_into_id != record.survivor_id:
        raise Conflict("the merged customer is no longer attached to this survivor")

    merged.merged_into_id = None
    merged.merged_at = None
    now = utcnow()
    merged.updated_at = now
    session.flush()
    tree = merge_tree(session, merged.id)
    for table in owned_tables():
        # only moved rows (a row of the tree still on its own customer is that customer's already), which is
        # what the busiest tables index by source
        from_tree = table.c.source_customer_id.in_(tree)
        session.execute(update(table).where(from_tree, moved(table)).values(customer_id=merged.id))
    traits = dict(survivor.traits or {})
    for key, value in (record.traits_added or {}).items():
        if key == "attributes" and isinstance(value, dict):
            attributes = dict(traits.get("attributes") or {})
            for attr, attr_value in value.items():
                if attributes.get(attr) == attr_value:
                    attributes.pop(attr)
            if attributes:
                traits["attributes"] = attributes
            else:
                traits.pop("attributes", None)
        elif traits.get(key) == value:
            traits.pop(key)
    # What the undone merge had filled may still be known from customers that stay merged.
    for still_merged in session.scalars(
        select(Merge)
        .where(Merge.survivor_id == survivor.id, Merge.undone_at.is_(None), Merge.id != record.id)
        .order_by(Merge.created_at, Merge.id)
    ):
        donor = session.get(Customer, still_merged.merged_id)
        if donor is not None and donor.merged_into_id == survivor.id:
            refilled = _fill_gaps(traits, donor.traits)
            if refilled:
                # that merge now owns these values too, so undoing it later takes them away
                owned = dict(still_merged.traits_added or {})
                owned_attributes = {**(owned.get("attributes") or {}), **refilled.pop("attributes", {})}
                owned.update(refilled)
                if owned_attributes:
                    owned["attributes"] = owned_attributes
                still_merged.traits_added = owned
    survivor.traits = traits
    survivor.search_name = search_name_for(traits)
    survivor.updated_at = now
    record.undone_at = now
    record.undone_by = actor
    session.flush()
    dispatch.publish(
        session,
        "customer.merge_undone",
        {"merge_id": record.id, "survivor_id": record.survivor_id, "merged_id": record.merged_id},
    )
    return record


def open_conflict(
    session: Session,
    *,
    customer_id: uuid.UUID,
    other_customer_id: uuid.UUID | None,
    identity_type: str,
    identity_value: str,
    reason: str,
    source_event_id: str | None,
) -> IdentityConflict:
    """Queue a refused merge or identity for review, once per pair and identity."""
    existing = session.scalar(
        select(IdentityConflict).where(
            IdentityConflict.status == "open",
            IdentityConflict.customer_id == customer_id,
            IdentityConflict.other_customer_id.is_(None)
            if other_customer_id is None
            else IdentityConflict.other_customer_id == other_customer_id,
            IdentityConflict.identity_type == identity_type,
            IdentityConflict.identity_value == identity_value,
        )
    )
    if existing is not None:
        return existing
    conflict = IdentityConflict(
        customer_id=customer_id,
        other_customer_id=other_customer_id,
        identity_type=identity_type,
        identity_value=identity_value,
        reason=reason,
        source_event_id=source_event_id,
    )
    session.add(conflict)
    session.flush()
    return conflict


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"
