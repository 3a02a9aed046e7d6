"""Customer profiles, identities, search, manual merges and the review queue."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from omnicanal import dispatch
from omnicanal.customers.identities import normalize, normalize_identity, parse_identity_query
from omnicanal.customers.merging import limit_violation, merge_customers, search_name_for, undo_merge
from omnicanal.customers.models import Customer, Identity, IdentityConflict, Merge
from omnicanal.customers.resolution import Resolver
from omnicanal.customers.schemas import (
    ConflictOut,
    CustomerCreate,
    CustomerOut,
    IdentityIn,
    IdentityOut,
    Traits,
)
from omnicanal.db import utcnow, uuid7
from omnicanal.errors import Conflict, FieldError, Moved, NotFound, ValidationFailed
from omnicanal.pagination import check_limit, decode_cursor, encode_cursor
from omnicanal.settings import Settings


def get_customer(session: Session, customer_id: uuid.UUID, *, follow_merges: bool = False) -> Customer:
    """The live customer; a merged-away id raises :class:`Moved` unless ``follow_merges``."""
    customer = session.get(Customer, customer_id)
    if customer is None or customer.erased_at is not None:
        raise NotFound(f"customer {customer_id} not found")
    seen = {customer.id}
    while customer.merged_into_id is not None:
        survivor = session.get(Customer, customer.merged_into_id)
        if survivor is None or survivor.id in seen:
            raise NotFound(f"customer {customer_id} not found")
        seen.add(survivor.id)
        customer = survivor
    if customer.id != customer_id and not follow_merges:
        raise Moved(
            f"customer {customer_id} was merged into {customer.id}",
            old_id=str(customer_id),
            new_id=str(customer.id),
        )
    return customer


def identities_of(session: Session, customer_id: uuid.UUID) -> list[Identity]:
    return list(
        session.scalars(
            select(Identity).where(Identity.customer_id == customer_id).order_by(Identity.added_at, Identity.id)
        )
    )


def customer_out(session: Session, customer: Customer, identities: list[Identity] | None = None) -> CustomerOut:
    if identities is None:
        identities = identities_of(session, customer.id)
    return CustomerOut(
        id=customer.id,
        traits=customer.traits or {},
        identities=[IdentityOut(type=i.type, value=i.value, source=i.source, added_at=i.added_at) for i in identities],
        created_at=customer.created_at,
        updated_at=customer.updated_at,
        merged_into=customer.merged_into_id,
    )


def _validated_traits(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        traits = Traits.model_validate(raw)
    except ValidationError as exc:
        errors = [FieldError("traits." + ".".join(str(p) for p in err["loc"]), err["msg"]) for err in exc.errors()]
        raise ValidationFailed("the traits are not valid", errors=errors) from None
    return traits.model_dump(mode="json", exclude_unset=True)


def _normalized_keys(identities: list[IdentityIn], settings: Settings, field: str) -> list[tuple[str, str]]:
    keys = []
    for index, identity in enumerate(identities):
        value = normalize_identity(
            identity.type, identity.value, region=settings.default_region, field=f"{field}[{index}]"
        )
        keys.append((identity.type, value))
    return keys


def create_customer(session: Session, *, data: CustomerCreate, settings: Settings, source: str) -> Customer:
    keys = _normalized_keys(data.identities, settings, "identities")
    for kind, value in keys:
        owner = session.scalar(select(Identity.customer_id).where(Identity.value == value, Identity.type == kind))
        if owner is not None:
            raise Conflict(f"identity {kind}:{value} already belongs to customer {owner}", customer_id=str(owner))
    for kind, limit in settings.identity_limits.items():
        if sum(1 for k, _ in keys if k == kind) > limit:
            raise ValidationFailed.on_field("identities", f"at most {limit} {kind} identity(ies) per customer")
    now = utcnow()
    traits = data.traits.model_dump(mode="json", exclude_none=True)
    customer = Customer(id=uuid7(), traits=traits, search_name=search_name_for(traits), created_at=now, updated_at=now)
    session.add(customer)
    session.flush()
    resolver = Resolver(session, settings, now=now)
    resolver.resolve(keys, customer_id=customer.id, source=source)
    resolver.flush()
    dispatch.publish(session, "customer.created", {"customer_id": customer.id, "source": source})
    return customer


def update_traits(session: Session, *, customer_id: uuid.UUID, changes: dict[str, Any], actor: str) -> Customer:
    """Partial update: keys given replace, keys given as null are removed."""
    customer = get_customer(session, customer_id)
    validated = _validated_traits(changes)
    traits = dict(customer.traits or {})
    for key, value in validated.items():
        if value is None:
            traits.pop(key, None)
        elif key == "attributes" and isinstance(value, dict):
            attributes = dict(traits.get("attributes") or {})
            for attr, attr_value in value.items():
                if attr_value is None:
                    attributes.pop(attr, None)
                else:
                    attributes[attr] = attr_value
            traits["attributes"] = attributes
        else:
            traits[key] = value
    customer.traits = traits
    customer.search_name = search_name_for(traits)
    customer.updated_at = utcnow()
    session.flush()
    dispatch.publish(
        session,
        "customer.updated",
        {"customer_id": customer.id, "changed": sorted(validated), "actor": actor},
    )
    return customer


def add_identity(
    session: Session, *, customer_id: uuid.UUID, identity: IdentityIn, source: str, settings: Settings
) -> Customer:
    """Attach an identity; if another customer holds it, the two merge under the usual rules."""
    customer = get_customer(session, customer_id)
    kind, value = _normalized_keys([identity], settings, "identity")[0]
    resolver = Resolver(session, settings, now=utcnow())
    if resolver.is_blocked((kind, value)):
        raise ValidationFailed.on_field("value", f"{kind}:{value} is a blocked value and identifies nobody")
    resolution = resolver.resolve([(kind, value)], customer_id=customer.id, source=source)
    resolver.flush()
    survivor = session.get(Customer, resolution.customer_id)
    assert survivor is not None
    survivor.updated_at = utcnow()
    return survivor


def find_by_identity(session: Session, *, identity: str, settings: Settings) -> Customer | None:
    kind, value = parse_identity_query(identity, region=settings.default_region)
    owner = session.scalar(select(Identity.customer_id).where(Identity.value == value, Identity.type == kind))
    return session.get(Customer, owner) if owner else None


def _query_variants(q: str, settings: Settings) -> set[str]:
    """The identity spellings a free-text query may stand for."""
    variants = {q.strip().lower()}
    for kind in ("phone", "email", "loyalty_card"):
        try:
            variants.add(normalize(kind, q, settings.default_region))
        except ValueError:
            continue
    return variants


def search_customers(
    session: Session, *, q: str | None, limit: int, cursor: str | None, settings: Settings
) -> tuple[list[Customer], str | None]:
    limit = check_limit(limit)
    after = decode_cursor(cursor, size=1)
    stmt = select(Customer).where(Customer.merged_into_id.is_(None), Customer.erased_at.is_(None))
    if q is not None:
        text = q.strip().lower()
        if len(text) < 2:
            raise ValidationFailed.on_field("q", "must have at least 2 characters")
        pattern = text.replace("\\", "").replace("%", "").replace("_", "")
        by_identity = select(Identity.customer_id).where(
            or_(Identity.value.in_(_query_variants(q, settings)), Identity.value.like(f"{pattern}%"))
        )
        stmt = stmt.where(
            or_(
                Customer.search_name.like(f"{pattern}%"),
                Customer.search_name.like(f"% {pattern}%"),
                Customer.id.in_(by_identity),
            )
        )
    if after is not None:
        try:
            stmt = stmt.where(Customer.id < uuid.UUID(str(after[0])))
        except ValueError:
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
    rows = list(session.scalars(stmt.order_by(Customer.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor([str(rows[limit - 1].id)]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def merge_manually(
    session: Session,
    *,
    customer_id: uuid.UUID,
    other_customer_id: uuid.UUID,
    force: bool,
    settings: Settings,
    actor: str,
) -> Merge:
    survivor = get_customer(session, customer_id)
    other = get_customer(session, other_customer_id, follow_merges=True)
    if other.id == survivor.id:
        raise Conflict("these customers are already one")
    violation = limit_violation(session, survivor.id, other.id, settings.identity_limits)
    if violation and not force:
        raise Conflict(f'merge refused: {violation}; send "force": true to merge anyway')
    return merge_customers(session, survivor_id=survivor.id, merged_id=other.id, reason="manual merge", trigger=actor)


def undo(session: Session, *, merge_id: uuid.UUID, actor: str) -> Merge:
    return undo_merge(session, merge_id=merge_id, actor=actor)


def merges_of(session: Session, customer_id: uuid.UUID) -> list[Merge]:
    return list(
        session.scalars(
            select(Merge)
            .where(or_(Merge.survivor_id == customer_id, Merge.merged_id == customer_id))
            .order_by(Merge.created_at.desc())
        )
    )


def list_conflicts(
    session: Session, *, status: str, limit: int, cursor: str | None
) -> tuple[list[ConflictOut], str | None]:
    limit = check_limit(limit)
    after = decode_cursor(cursor, size=1)
    stmt = select(IdentityConflict).where(IdentityConflict.status == status)
    if after is not None:
        try:
            stmt = stmt.where(IdentityConflict.id < uuid.UUID(str(after[0])))
        except ValueError:
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
    rows = list(session.scalars(stmt.order_by(IdentityConflict.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor([str(rows[limit - 1].id)]) if len(rows) > limit else None
    items = []
    for conflict in rows[:limit]:
        item = ConflictOut.model_validate(conflict, from_attributes=True)
        item.customer = _live_out(session, conflict.customer_id)
        if conflict.other_customer_id is not None:
            item.other_customer = _live_out(session, conflict.other_customer_id)
        items.append(item)
    return items, next_cursor


def _live_out(session: Session, customer_id: uuid.UUID) -> CustomerOut | None:
    try:
        return customer_out(session, get_customer(session, customer_id, follow_merges=True))
    except NotFound:
        return None


def decide_conflict(
    session: Session, *, conflict_id: uuid.UUID, action: str, settings: Settings, actor: str
) -> IdentityConflict:
    conflict = session.get(IdentityConflict, conflict_id)
    if conflict is None:
        raise NotFound(f"identity conflict {conflict_id} not found")
    if conflict.status != "open":
        raise Conflict(f"this conflict was already {conflict.status}")
    if action == "merge":
        if conflict.other_customer_id is None:
            raise Conflict("this conflict has no second customer to merge; dismiss it instead")
        survivor = get_customer(session, conflict.customer_id, follow_merges=True)
        other = get_customer(session, conflict.other_customer_id, follow_merges=True)
        if survivor.id != other.id:
            merge_customers(
                session,
                survivor_id=survivor.id,
                merged_id=other.id,
                reason=f"review: {conflict.identity_type} (operator override)",
                trigger=actor,
            )
        conflict.status = "merged"
    elif action == "dismiss":
        conflict.status = "dismissed"
    else:
        raise ValidationFailed.on_field("action", "must be merge or dismiss")
    conflict.resolved_at = utcnow()
    conflict.resolved_by = actor
    session.flush()
    return conflict
