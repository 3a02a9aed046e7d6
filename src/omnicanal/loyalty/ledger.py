"""The ledger: lots of points and the immutable entries that change them.

Invariants (tests/loyalty/test_ledger_properties.py checks them under random operations):
- a lot's ``remaining`` is the sum of its entries; a customer's balance is the sum of their entries;
- an entry touches one lot and carries the lot's ``source_customer_id``, so merges and undo move them together;
- a wallet never goes below zero by spending: spending locks the customer's wallet rows (in id order) first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import bulk_insert, connection_of
from omnicanal.errors import Conflict, ValidationFailed
from omnicanal.loyalty.models import LoyaltyEntry, LoyaltyLot
from omnicanal.loyalty.queries import insert
from omnicanal.loyalty.wallets import lock_wallets


class InsufficientPoints(Conflict):
    slug = "insufficient-points"
    title = "Not enough points"


@dataclass(frozen=True)
class NewLot:
    customer_id: uuid.UUID
    points: int
    reason: str
    source: str
    available_from: datetime
    expires_at: datetime | None
    rule_id: uuid.UUID | None = None
    order_id: str | None = None
    lines: dict[str, Any] | None = None
    note: str = ""
    actor: str = "system"


def add_lots(session: Session, lots: Sequence[NewLot], *, now: datetime) -> list[uuid.UUID]:
    """Write earned lots and their first entries (two multi-row inserts)."""
    if not lots:
        return []
    lot_rows: list[dict[str, Any]] = []
    entry_rows: list[dict[str, Any]] = []
    for lot in lots:
        if lot.points <= 0:
            raise ValidationFailed.on_field("points", "must be positive")
        lot_id = uuid7()
        lot_rows.append(
            {
                "id": lot_id,
                "customer_id": lot.customer_id,
                "source_customer_id": lot.customer_id,
                "earned": lot.points,
                "remaining": lot.points,
                "earned_at": now,
                "available_from": lot.available_from,
                "expires_at": lot.expires_at,
                "source": lot.source,
                "reason": lot.reason,
                "rule_id": lot.rule_id,
                "order_id": lot.order_id,
                "lines": lot.lines or {},
                "reversed_lines": {},
            }
        )
        entry_rows.append(
            _entry_row(
                lot_id,
                lot.customer_id,
                lot.points,
                lot.reason,
                lot.source,
                now,
                lot.available_from,
                lot.expires_at,
                note=lot.note,
                actor=lot.actor,
            )
        )
    bulk_insert(session, LoyaltyLot, lot_rows)
    bulk_insert(session, LoyaltyEntry, entry_rows)
    return [row["id"] for row in lot_rows]


def _entry_row(
    lot_id: uuid.UUID,
    source_customer_id: uuid.UUID,
    points: int,
    reason: str,
    source: str,
    now: datetime,
    available_from: datetime,
    expires_at: datetime | None,
    *,
    customer_id: uuid.UUID | None = None,
    note: str = "",
    actor: str = "system",
    redemption_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    return {
        "id": uuid7(),
        "customer_id": customer_id or source_customer_id,
        "source_customer_id": source_customer_id,
        "lot_id": lot_id,
        "points": points,
        "reason": reason,
        "source": source,
        "note": note,
        "actor": actor,
        "available_from": available_from,
        "expires_at": expires_at,
        "redemption_id": redemption_id,
        "created_at": now,
    }


def _change_lot(
    session: Session,
    lot: LoyaltyLot,
    points: int,
    *,
    reason: str,
    source: str,
    now: datetime,
    note: str = "",
    actor: str = "system",
    redemption_id: uuid.UUID | None = None,
) -> None:
    # the row is written by this UPDATE; the object only learns the value (no second write at flush)
    set_committed_value(lot, "remaining", lot.remaining + points)
    session.execute(update(LoyaltyLot).where(LoyaltyLot.id == lot.id).values(remaining=lot.remaining))
    session.execute(
        insert(session, LoyaltyEntry).values(
            _entry_row(
                lot.id,
                lot.source_customer_id,
                points,
                reason,
                source,
                now,
                lot.available_from,
                lot.expires_at,
                customer_id=lot.customer_id,
                note=note,
                actor=actor,
                redemption_id=redemption_id,
            )
        )
    )


def _wallet_lots(session: Session, customer_id: uuid.UUID, now: datetime) -> tuple[list[LoyaltyLot], list[LoyaltyLot]]:
    """Debt lots (oldest first) and spendable lots (soonest-expiring first), in one query."""
    rows = session.scalars(
        select(LoyaltyLot)
        .where(
            LoyaltyLot.customer_id == customer_id,
            or_(
                LoyaltyLot.remaining < 0,
                and_(
                    LoyaltyLot.remaining > 0,
                    LoyaltyLot.available_from <= now,
                    or_(LoyaltyLot.expires_at.is_(None), LoyaltyLot.expires_at > now),
                ),
            ),
        )
        .order_by(
            case((LoyaltyLot.expires_at.is_(None), 1), else_=0),
            LoyaltyLot.expires_at,
            LoyaltyLot.earned_at,
            LoyaltyLot.id,
        )
    ).all()
    debts = sorted((lot for lot in rows if lot.remaining < 0), key=lambda lot: (lot.earned_at, lot.id))
    return debts, [lot for lot in rows if lot.remaining > 0]


def _settle(session: Session, debts: list[LoyaltyLot], lots: list[LoyaltyLot], *, now: datetime) -> None:
    """Pay debt lots (returns of points already spent) from available points. Wallet rows must be locked."""
    for debt in debts:
        for lot in lots:
            if debt.remaining >= 0:
                break
            take = min(lot.remaining, -debt.remaining)
            if take <= 0:
                continue
            source = f"debt:{debt.id}"
            _change_lot(session, lot, -take, reason="debt_settled", source=source, now=now)
            _change_lot(session, debt, take, reason="debt_settled", source=source, now=now)


def spend(
    session: Session,
    *,
    customer_id: uuid.UUID,
    points: int,
    reason: str,
    source: str,
    now: datetime,
    note: str = "",
    actor: str = "system",
    redemption_id: uuid.UUID | None = None,
) -> None:
    """Take ``points`` from the soonest-expiring lots, or raise :class:`InsufficientPoints` changing nothing."""
    if points <= 0:
        raise ValidationFailed.on_field("points", "must be positive")
    lock_wallets(session, customer_id)
    debts, lots = _wallet_lots(session, customer_id, now)
    if debts:
        _settle(session, debts, lots, now=now)
    available = sum(lot.remaining for lot in lots) + sum(d.remaining for d in debts)
    if available < points:
        raise InsufficientPoints(
            f"{points} points asked, {max(available, 0)} available", available=max(available, 0), asked=points
        )
    left = points
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take <= 0:
            continue
        _change_lot(
            session,
            lot,
            -take,
            reason=reason,
            source=source,
            now=now,
            note=note,
            actor=actor,
            redemption_id=redemption_id,
        )
        left -= take


# Statements of the redemption path, built once: building and compiling a statement cost more CPU than
# running it (docs/benchmarks-loyalty.md, L2). Executed on the session's Core connection, no ORM objects.
_SPENDABLE = (
    select(
        LoyaltyLot.id,
        LoyaltyLot.customer_id,
        LoyaltyLot.source_customer_id,
        LoyaltyLot.remaining,
        LoyaltyLot.available_from,
        LoyaltyLot.expires_at,
    )
    .where(
        LoyaltyLot.customer_id == bindparam("customer_id"),
        or_(
            LoyaltyLot.remaining < 0,
            and_(
                LoyaltyLot.remaining > 0,
                LoyaltyLot.available_from <= bindparam("now"),
                or_(LoyaltyLot.expires_at.is_(None), LoyaltyLot.expires_at > bindparam("now")),
            ),
        ),
    )
    .order_by(
        case((LoyaltyLot.expires_at.is_(None), 1), else_=0),
        LoyaltyLot.expires_at,
        LoyaltyLot.earned_at,
        LoyaltyLot.id,
    )
)
_SET_REMAINING = (
    update(LoyaltyLot)
    .where(LoyaltyLot.id == bindparam("lot_id"))
    .values(remaining=bindparam("remaining"))
    .execution_options(synchronize_session=False)
)


def spend_locked(
    session: Session,
    *,
    customer_id: uuid.UUID,
    points: int,
    reason: str,
    source: str,
    now: datetime,
    actor: str = "system",
    redemption_id: uuid.UUID | None = None,
) -> None:
    """:func:`spend` for a customer whose wallets this transaction has locked: one read, one executemany of lot
    updates, one of entries. A wallet with debts takes the general path (which settles them first)."""
    if points <= 0:
        raise ValidationFailed.on_field("points", "must be positive")
    connection = connection_of(session)
    rows = connection.execute(_SPENDABLE, {"customer_id": customer_id, "now": now}).all()
    if any(row.remaining < 0 for row in rows):
        spend(
            session,
            customer_id=customer_id,
            points=points,
            reason=reason,
            source=source,
            now=now,
            actor=actor,
            redemption_id=redemption_id,
        )
        return
    available = sum(row.remaining for row in rows)
    if available < points:
        raise InsufficientPoints(f"{points} points asked, {available} available", available=available, asked=points)
    left = points
    changes: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for row in rows:
        if left == 0:
            break
        take = min(row.remaining, left)
        left -= take
        changes.append({"lot_id": row.id, "remaining": row.remaining - take})
        entries.append(
            _entry_row(
                row.id,
                row.source_customer_id,
                -take,
                reason,
                source,
                now,
                row.available_from,
                row.expires_at,
                customer_id=row.customer_id,
                actor=actor,
                redemption_id=redemption_id,
            )
        )
    connection.execute(_SET_REMAINING, changes)
    bulk_insert(session, LoyaltyEntry, entries)


def take_back(
    session: Session,
    lot: LoyaltyLot,
    points: int,
    *,
    reason: str,
    source: str,
    now: datetime,
    note: str = "",
    actor: str = "system",
) -> int:
    """Reverse ``points`` a lot earned: from the lot while it has them, the rest as debt. Returns the debt."""
    from_lot = max(min(points, lot.remaining), 0)
    if from_lot:
        _change_lot(session, lot, -from_lot, reason=reason, source=source, now=now, note=note, actor=actor)
    debt = points - from_lot
    if debt:
        debt_id = uuid7()
        session.execute(
            insert(session, LoyaltyLot).values(
                id=debt_id,
                customer_id=lot.customer_id,
                source_customer_id=lot.source_customer_id,
                earned=0,
                remaining=-debt,
                earned_at=now,
                available_from=now,
                expires_at=None,
                source=source,
                reason=reason,
                rule_id=lot.rule_id,
                order_id=lot.order_id,
                lines={},
                reversed_lines={},
            )
        )
        session.execute(
            insert(session, LoyaltyEntry).values(
                _entry_row(
                    debt_id,
                    lot.source_customer_id,
                    -debt,
                    reason,
                    source,
                    now,
                    now,
                    None,
                    customer_id=lot.customer_id,
                    note=note,
                    actor=actor,
                )
            )
        )
    return debt


def refund(session: Session, *, redemption_id: uuid.UUID, reason: str, source: str, now: datetime) -> int:
    """Give back to their lots the points a redemption took (a cancelled or clawed-back reward)."""
    taken = list(
        session.execute(
            select(LoyaltyEntry.lot_id, func.sum(LoyaltyEntry.points))
            .where(LoyaltyEntry.redemption_id == redemption_id)
            .group_by(LoyaltyEntry.lot_id)
        )
    )
    total = 0
    for lot_id, points in taken:
        if not points:
            continue
        lot = session.get(LoyaltyLot, lot_id)
        assert lot is not None
        _change_lot(session, lot, -int(points), reason=reason, source=source, now=now, redemption_id=redemption_id)
        total += -int(points)
    return total


def expire_due(session: Session, *, now: datetime | None = None, limit: int = 1000) -> int:
    """Expire every lot past its date, exactly what each still holds; returns the points expired."""
    now = now or utcnow()
    customers = list(
        session.scalars(
            select(LoyaltyLot.customer_id)
            .where(LoyaltyLot.expires_at <= now, LoyaltyLot.remaining > 0)
            .distinct()
            .limit(limit)
        )
    )
    expired = 0
    for customer_id in sorted(customers):
        lock_wallets(session, customer_id)
        lots = session.scalars(
            select(LoyaltyLot)
            .where(LoyaltyLot.customer_id == customer_id, LoyaltyLot.expires_at <= now, LoyaltyLot.remaining > 0)
            .order_by(LoyaltyLot.id)
        )
        for lot in list(lots):
            expired += lot.remaining
            _change_lot(session, lot, -lot.remaining, reason="expire", source=f"expiry:{lot.id}", now=now)
    return expired
