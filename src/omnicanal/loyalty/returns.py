"""Returns take back exactly the points the returned lines earned.

A line that earned ``p`` points for ``q`` units gives back ``floor(p * returned / q)`` in total over all its
returns (so returning every unit gives back exactly ``p``, whatever the split). Points still in the lot
leave it; points already spent become debt (policy ``negative``) or first cancel the customer's unused
rewards (policy ``clawback``), then debt.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.db import utcnow, uuid7
from omnicanal.errors import ValidationFailed
from omnicanal.loyalty import keys, ledger, wallets
from omnicanal.loyalty.earning import WHOLE_ORDER, programme
from omnicanal.loyalty.models import LoyaltyLot, LoyaltySpend


def reverse_return(session: Session, payload: Mapping[str, Any], *, now: datetime | None = None) -> int:
    """Reverse the points of the returned lines; returns the points taken back (0 when already done)."""
    now = now or utcnow()
    try:
        order_id = str(payload["order_id"])
        return_id = str(payload["return_id"])
        returned = {
            str(line.get("line_id") or line["sku"]): int(line.get("quantity") or 1)
            for line in payload.get("lines") or []
        }
        refunded = int(payload.get("refund_amount") or 0)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationFailed.on_field("return", f"is not an order.returned payload ({exc})") from None
    if not keys.claim(session, f"return:{return_id}", now=now):
        return 0
    lots = list(
        session.scalars(
            select(LoyaltyLot).where(LoyaltyLot.order_id == order_id, LoyaltyLot.earned > 0).order_by(LoyaltyLot.id)
        )
    )
    if not lots:
        return 0
    policy = programme(session).loyalty_return_policy
    total = 0
    for customer_id in sorted({lot.customer_id for lot in lots}):
        wallets.lock_wallets(session, customer_id)
    for lot in lots:
        session.refresh(lot)
        reversed_lines = dict(lot.reversed_lines or {})
        asked = dict(returned)
        if WHOLE_ORDER in (lot.lines or {}) and refunded:
            asked = {WHOLE_ORDER: refunded}  # an order earned as a whole gives back the refunded share
        for line_id, quantity in asked.items():
            earned = (lot.lines or {}).get(line_id)
            if not earned:
                continue
            before = reversed_lines.get(line_id, {"quantity": 0, "points": 0})
            units = min(before["quantity"] + quantity, earned["quantity"])
            owed = earned["points"] * units // earned["quantity"] - before["points"]
            reversed_lines[line_id] = {"quantity": units, "points": before["points"] + owed}
            if owed <= 0:
                continue
            source = f"return:{return_id}"
            if policy == "clawback" and lot.remaining < owed:
                from omnicanal.loyalty.rewards import claw_back

                claw_back(
                    session, customer_id=lot.customer_id, points=owed - max(lot.remaining, 0), source=source, now=now
                )
                session.refresh(lot)
            ledger.take_back(
                session, lot, owed, reason="return", source=source, now=now, note=f"order {order_id} line {line_id}"
            )
            total += owed
        lot.reversed_lines = reversed_lines
        session.flush()
    spent = session.scalar(select(LoyaltySpend).where(LoyaltySpend.order_id == order_id).limit(1))
    given_back = refunded or sum(int(line.get("amount") or 0) for line in payload.get("lines") or [])
    if spent is not None and given_back:
        session.add(
            LoyaltySpend(
                id=uuid7(),
                customer_id=spent.customer_id,
                source_customer_id=spent.source_customer_id,
                order_id=order_id,
                amount=-given_back,
                currency=spent.currency,
                spent_at=now,
            )
        )
    if total:
        from omnicanal.loyalty.notifications import timeline

        timeline(
            session,
            lots[0].customer_id,
            "loyalty.points_reversed",
            {"order_id": order_id, "return_id": return_id, "points": total},
        )
    return total


def customer_of_order(session: Session, order_id: str) -> uuid.UUID | None:
    return session.scalar(select(LoyaltyLot.customer_id).where(LoyaltyLot.order_id == order_id).limit(1))
