"""Tiers: qualify on points earned (never the balance) or on spend within a rolling window.

An upgrade happens at once, after the earning that reached the threshold. A downgrade waits for the end
of the tier's period (``window_days`` after the tier was reached or last kept): the customer keeps the tier
with at least ``retention_threshold`` (default: the threshold) in the window, else falls to the highest tier
they still qualify for. After a merge the survivor has several wallet rows; the highest tier among them
counts, and undo gives each customer back their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from omnicanal.db import utcnow
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.loyalty import wallets
from omnicanal.loyalty.models import (
    LoyaltyEntry,
    LoyaltyReward,
    LoyaltyRule,
    LoyaltySpend,
    LoyaltyTier,
    LoyaltyWallet,
)
from omnicanal.loyalty.queries import among

QUALIFYING_REASONS = ("order", "bonus", "referral", "purchase_code", "return")


def list_tiers(session: Session) -> list[LoyaltyTier]:
    return list(session.scalars(select(LoyaltyTier).order_by(LoyaltyTier.threshold)))


def _validate_tier(session: Session, data: dict[str, Any], *, other_than: uuid.UUID | None = None) -> None:
    if data.get("basis", "points") not in ("points", "spend"):
        raise ValidationFailed.on_field("basis", "one of points, spend")
    retention = data.get("retention_threshold")
    if retention is not None and retention > data["threshold"]:
        raise ValidationFailed.on_field("retention_threshold", "cannot be above the threshold to reach the tier")
    others = select(LoyaltyTier.id).where(LoyaltyTier.id != other_than) if other_than else select(LoyaltyTier.id)
    if session.scalar(others.where(LoyaltyTier.name == data["name"])) is not None:
        raise Conflict(f"a tier named {data['name']!r} exists")
    if session.scalar(others.where(LoyaltyTier.threshold == data["threshold"])) is not None:
        raise ValidationFailed.on_field("threshold", "another tier has this threshold")


def create_tier(session: Session, data: dict[str, Any]) -> LoyaltyTier:
    _validate_tier(session, data)
    tier = LoyaltyTier(**data)
    session.add(tier)
    session.flush()
    return tier


def get_tier(session: Session, tier_id: uuid.UUID) -> LoyaltyTier:
    tier = session.get(LoyaltyTier, tier_id)
    if tier is None:
        raise NotFound(f"tier {tier_id} not found")
    return tier


def _naming(session: Session, name: str) -> list[LoyaltyRule | LoyaltyReward]:
    """The rules and rewards (not deleted) restricted to the tier called ``name``."""
    rules = session.scalars(select(LoyaltyRule).where(LoyaltyRule.archived_at.is_(None)))
    rewards = session.scalars(select(LoyaltyReward).where(LoyaltyReward.archived_at.is_(None)))
    return [row for row in [*rules, *rewards] if name in row.tiers]


def update_tier(session: Session, tier_id: uuid.UUID, data: dict[str, Any]) -> LoyaltyTier:
    """Replace a tier's settings. Customers keep it until the next upgrade or review; a new name is carried
    to the rules and rewards restricted to the tier."""
    tier = get_tier(session, tier_id)
    _validate_tier(session, data, other_than=tier.id)
    if data["name"] != tier.name:
        for row in _naming(session, tier.name):
            row.tiers = [data["name"] if t == tier.name else t for t in row.tiers]
    for name, value in data.items():
        setattr(tier, name, value)
    session.flush()
    return tier


class TierInUse(Conflict):
    slug = "tier-in-use"
    title = "The tier is in use"


def delete_tier(session: Session, tier_id: uuid.UUID) -> None:
    """Delete a tier nobody holds and no rule or reward is restricted to (else :class:`TierInUse`)."""
    tier = get_tier(session, tier_id)
    holders = session.scalar(select(func.count()).select_from(LoyaltyWallet).where(LoyaltyWallet.tier_id == tier.id))
    if holders:
        raise TierInUse(
            f"{holders} customer(s) hold the tier {tier.name!r}; raise its threshold or wait for the review",
            holders=holders,
        )
    naming = _naming(session, tier.name)
    if naming:
        names = ", ".join(sorted(row.name for row in naming))
        raise TierInUse(f"these rules or rewards are only for the tier {tier.name!r}: {names}", used_by=names)
    session.delete(tier)
    session.flush()


def _metrics(
    session: Session, customer_ids: Sequence[uuid.UUID], tiers: Sequence[LoyaltyTier], now: datetime
) -> dict[tuple[str, int], dict[uuid.UUID, int]]:
    found: dict[tuple[str, int], dict[uuid.UUID, int]] = {}
    for basis, window in {(t.basis, t.window_days) for t in tiers}:
        start = now - timedelta(days=window)
        if basis == "points":
            stmt = (
                select(LoyaltyEntry.customer_id, func.sum(LoyaltyEntry.points))
                .where(
                    among(session, LoyaltyEntry.customer_id, customer_ids),
                    LoyaltyEntry.reason.in_(QUALIFYING_REASONS),
                    LoyaltyEntry.created_at >= start,
                )
                .group_by(LoyaltyEntry.customer_id)
            )
        else:
            stmt = (
                select(LoyaltySpend.customer_id, func.sum(LoyaltySpend.amount))
                .where(among(session, LoyaltySpend.customer_id, customer_ids), LoyaltySpend.spent_at >= start)
                .group_by(LoyaltySpend.customer_id)
            )
        found[(basis, window)] = {cid: int(total or 0) for cid, total in session.execute(stmt)}
    return found


def _qualified(
    tiers: Sequence[LoyaltyTier],
    metrics: dict[tuple[str, int], dict[uuid.UUID, int]],
    customer_id: uuid.UUID,
    *,
    keeping: LoyaltyTier | None = None,
) -> LoyaltyTier | None:
    best = None
    for tier in tiers:
        value = metrics[(tier.basis, tier.window_days)].get(customer_id, 0)
        needed = tier.threshold
        if keeping is not None and tier.id == keeping.id and tier.retention_threshold is not None:
            needed = tier.retention_threshold
        if value >= needed:
            best = tier
    return best


def current_tiers(session: Session, customer_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, LoyaltyTier]:
    found: dict[uuid.UUID, LoyaltyTier] = {}
    for cid, tier in session.execute(
        select(LoyaltyWallet.customer_id, LoyaltyTier)
        .join(LoyaltyTier, LoyaltyTier.id == LoyaltyWallet.tier_id)
        .where(among(session, LoyaltyWallet.customer_id, customer_ids))
        .order_by(LoyaltyTier.threshold)
    ):
        found[cid] = tier
    return found


def _set_tier(
    session: Session, customer_id: uuid.UUID, tier: LoyaltyTier | None, old: LoyaltyTier | None, now: datetime
) -> None:
    from omnicanal.loyalty.notifications import notify, timeline

    wallet = wallets.primary_wallet(session, customer_id)
    for other in session.scalars(select(LoyaltyWallet).where(LoyaltyWallet.customer_id == customer_id)):
        if other.id != wallet.id:
            other.tier_id = None
    wallet.tier_id = tier.id if tier else None
    wallet.tier_since = now
    session.flush()
    change = {"from": old.name if old else None, "to": tier.name if tier else None}
    timeline(session, customer_id, "loyalty.tier_changed", change)
    notify(session, customer_id, "tier_changed", change)


def upgrade(session: Session, customer_ids: Sequence[uuid.UUID], *, now: datetime | None = None) -> None:
    now = now or utcnow()
    tiers = list_tiers(session)
    if not tiers or not customer_ids:
        return
    metrics = _metrics(session, customer_ids, tiers, now)
    current = current_tiers(session, customer_ids)
    for customer_id in customer_ids:
        best = _qualified(tiers, metrics, customer_id)
        old = current.get(customer_id)
        if best is not None and (old is None or best.threshold > old.threshold):
            _set_tier(session, customer_id, best, old, now)


def review(session: Session, *, now: datetime | None = None) -> int:
    """End-of-period review: keep or lower each tier whose period ended; returns how many fell."""
    now = now or utcnow()
    tiers = list_tiers(session)
    fallen = 0
    for wallet, tier in session.execute(
        select(LoyaltyWallet, LoyaltyTier).join(LoyaltyTier, LoyaltyTier.id == LoyaltyWallet.tier_id)
    ).all():
        if wallet.tier_since is None or wallet.tier_since + timedelta(days=tier.window_days) > now:
            continue
        metrics = _metrics(session, [wallet.customer_id], tiers, now)
        kept = _qualified(tiers, metrics, wallet.customer_id, keeping=tier)
        if kept is not None and kept.threshold >= tier.threshold:
            wallet.tier_since = now
            continue
        _set_tier(session, wallet.customer_id, kept, tier, now)
        fallen += 1
    return fallen
