"""The loyalty operations the API and the console share."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.customers.identities import normalize_identity
from omnicanal.customers.models import Customer, Identity
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow
from omnicanal.errors import NotFound, ValidationFailed
from omnicanal.loyalty import balances, keys, ledger
from omnicanal.loyalty.earning import Earned, LoyaltyEvent, earn_direct, earn_events, programme
from omnicanal.loyalty.models import LoyaltyLot, LoyaltyRule
from omnicanal.loyalty.rewards import Archived
from omnicanal.loyalty.rules import validate_rule
from omnicanal.loyalty.schemas import EventIn, Expiring, RuleIn, WalletOut
from omnicanal.loyalty.tiers import current_tiers
from omnicanal.settings import Settings


def wallet_out(session: Session, customer_id: uuid.UUID, *, now: datetime | None = None) -> WalletOut:
    customer = get_customer(session, customer_id)
    settings = programme(session)
    found = balances.summary(session, customer.id, now=now, horizon_days=settings.loyalty_expiring_notice_days)
    tier = current_tiers(session, [customer.id]).get(customer.id)
    return WalletOut(
        customer_id=customer.id,
        balance=found.balance,
        pending=found.pending,
        tier=tier.name if tier else None,
        expiring=[Expiring(points=p, expires_at=w) for p, w in found.expiring],
    )


def resolve_customer(session: Session, data: EventIn, settings: Settings) -> uuid.UUID:
    if data.customer_id is not None:
        return get_customer(session, data.customer_id, follow_merges=True).id
    if not data.identities:
        raise ValidationFailed.on_field("customer_id", "give the customer_id or identities of a known customer")
    for index, identity in enumerate(data.identities):
        value = normalize_identity(
            identity.type, identity.value, region=settings.default_region, field=f"identities.{index}"
        )
        owner = session.scalar(
            select(Identity.customer_id).where(Identity.type == identity.type, Identity.value == value)
        )
        if owner is not None:
            return get_customer(session, owner, follow_merges=True).id
    raise NotFound("no customer has these identities")


def post_event(session: Session, data: EventIn, *, settings: Settings) -> tuple[uuid.UUID, list[Earned]]:
    customer_id = resolve_customer(session, data, settings)
    if data.type == "referral.signup":
        from omnicanal.loyalty.referrals import attach

        code = data.properties.get("code")
        if not isinstance(code, str):
            raise ValidationFailed.on_field("properties.code", "the referral code is required")
        if keys.claim(session, f"event:{data.id}"):
            attach(session, customer_id=customer_id, code=code)
        return customer_id, []
    event = LoyaltyEvent(data.id, customer_id, data.type, data.properties, data.channel)
    return customer_id, earn_events(session, [event])


def adjust(
    session: Session, *, customer_id: uuid.UUID, points: int, reason: str, request_id: str, actor: str
) -> Earned | None:
    """A manual correction, with the reason on the ledger; negative takes points (never below zero)."""
    customer = get_customer(session, customer_id)
    if not reason.strip():
        raise ValidationFailed.on_field("reason", "a manual adjustment needs a reason")
    if points == 0:
        raise ValidationFailed.on_field("points", "must not be zero")
    source = f"adjustment:{request_id}"
    if points > 0:
        return earn_direct(
            session,
            customer_id=customer.id,
            points=points,
            reason="adjust",
            source=source,
            key=source,
            note=reason,
            actor=actor,
        )
    if not keys.claim(session, source):
        return None
    ledger.spend(
        session,
        customer_id=customer.id,
        points=-points,
        reason="adjust",
        source=source,
        now=utcnow(),
        note=reason,
        actor=actor,
    )
    return Earned(customer.id, points, "adjust", source)


def create_rule(session: Session, data: RuleIn) -> LoyaltyRule:
    values: dict[str, Any] = data.model_dump()
    validate_rule(values)
    rule = LoyaltyRule(**values)
    session.add(rule)
    session.flush()
    return rule


def list_rules(session: Session) -> list[LoyaltyRule]:
    return list(
        session.scalars(
            select(LoyaltyRule)
            .where(LoyaltyRule.archived_at.is_(None))
            .order_by(LoyaltyRule.created_at, LoyaltyRule.id)
        )
    )


def get_rule(session: Session, rule_id: uuid.UUID) -> LoyaltyRule:
    rule = session.get(LoyaltyRule, rule_id)
    if rule is None:
        raise NotFound(f"rule {rule_id} not found")
    return rule


def update_rule(session: Session, rule_id: uuid.UUID, data: RuleIn) -> LoyaltyRule:
    """Replace a rule's settings; points already earned keep the rule they were earned under."""
    rule = get_rule(session, rule_id)
    if rule.archived_at is not None:
        raise Archived(f"the rule {rule.name!r} was deleted; create a new one")
    values: dict[str, Any] = data.model_dump()
    validate_rule(values)
    for name, value in values.items():
        setattr(rule, name, value)
    session.flush()
    return rule


def delete_rule(session: Session, rule_id: uuid.UUID, *, now: datetime | None = None) -> bool:
    """Delete a rule; one that points were earned under is archived (kept for the ledger, earns no more).
    Returns True when it was archived."""
    rule = get_rule(session, rule_id)
    if rule.archived_at is not None:
        return True
    if session.scalar(select(LoyaltyLot.id).where(LoyaltyLot.rule_id == rule.id).limit(1)) is None:
        session.delete(rule)
        session.flush()
        return False
    rule.active = False
    rule.archived_at = now or utcnow()
    session.flush()
    return True


def customer_exists(session: Session, customer_id: uuid.UUID) -> bool:
    return session.get(Customer, customer_id) is not None
