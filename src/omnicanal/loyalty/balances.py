"""What a wallet holds (balance, pending, expiring soon) and its ledger, page by page: reads only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from omnicanal.db import utcnow
from omnicanal.errors import ValidationFailed
from omnicanal.loyalty.models import LoyaltyEntry, LoyaltyLot
from omnicanal.pagination import check_limit, decode_cursor, encode_cursor


@dataclass(frozen=True)
class Summary:
    balance: int
    pending: int
    expiring: list[tuple[int, datetime]]


def summary(
    session: Session, customer_id: uuid.UUID, *, now: datetime | None = None, horizon_days: int = 30
) -> Summary:
    now = now or utcnow()
    row = session.execute(
        select(
            func.coalesce(func.sum(case((LoyaltyEntry.available_from <= now, LoyaltyEntry.points), else_=0)), 0),
            func.coalesce(func.sum(case((LoyaltyEntry.available_from > now, LoyaltyEntry.points), else_=0)), 0),
        ).where(LoyaltyEntry.customer_id == customer_id)
    ).one()
    expiring = list(
        session.execute(
            select(LoyaltyLot.expires_at, func.sum(LoyaltyLot.remaining))
            .where(
                LoyaltyLot.customer_id == customer_id,
                LoyaltyLot.remaining > 0,
                LoyaltyLot.expires_at.is_not(None),
                LoyaltyLot.expires_at <= now + timedelta(days=horizon_days),
            )
            .group_by(LoyaltyLot.expires_at)
            .order_by(LoyaltyLot.expires_at)
        )
    )
    return Summary(
        balance=int(row[0]),
        pending=int(row[1]),
        expiring=[(int(points), when) for when, points in expiring if when is not None],
    )


def ledger_page(
    session: Session, customer_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[list[LoyaltyEntry], str | None]:
    check_limit(limit)
    stmt = select(LoyaltyEntry).where(LoyaltyEntry.customer_id == customer_id)
    after = decode_cursor(cursor, size=2)
    if after is not None:
        try:
            created_at = datetime.fromisoformat(after[0])
            entry_id = uuid.UUID(after[1])
        except (TypeError, ValueError):
            raise ValidationFailed.on_field("cursor", "is not a cursor this API returned") from None
        stmt = stmt.where(
            or_(
                LoyaltyEntry.created_at < created_at,
                and_(LoyaltyEntry.created_at == created_at, LoyaltyEntry.id < entry_id),
            )
        )
    rows = list(session.scalars(stmt.order_by(LoyaltyEntry.created_at.desc(), LoyaltyEntry.id.desc()).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor([last.created_at.isoformat(), str(last.id)])
    return rows, next_cursor
