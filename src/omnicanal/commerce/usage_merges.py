"""Per-customer promotion uses follow customer merges, and undoing a merge takes them back.

The per-customer counters (``commerce_promotion_usage``) are keyed by customer and raised by conditional
updates in the order's transaction, so they cannot move with a merge the way customer-owned rows do.
Instead, a merge adds the merged customer's uses to the survivor's counters (a customer who used a
once-per-customer promotion under another record has used it) and records how many it added; undoing
the merge takes exactly that many back. The merged customer's own counters are never changed, so after
the undo each customer has their own uses again.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Uuid, case, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from omnicanal.commerce.models import PromotionCustomerUsage
from omnicanal.commerce.promotions import _upsert_usage
from omnicanal.db import Base
from omnicanal.ids import as_uuid


class PromotionUsageMerge(Base):
    __tablename__ = "commerce_promotion_usage_merges"

    merge_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    promotion_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("commerce_promotions.id"), primary_key=True)
    survivor_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    moved: Mapped[int] = mapped_column(BigInteger)


def on_merged(session: Session, payload: dict[str, Any]) -> None:
    merge_id, survivor, merged = (
        as_uuid(payload["merge_id"]),
        as_uuid(payload["survivor_id"]),
        as_uuid(payload["merged_id"]),
    )
    uses = session.execute(
        select(PromotionCustomerUsage.promotion_id, PromotionCustomerUsage.used_count)
        .where(PromotionCustomerUsage.customer_key == merged, PromotionCustomerUsage.used_count > 0)
        .order_by(PromotionCustomerUsage.promotion_id)
    ).all()
    for promotion_id, count in uses:
        _upsert_usage(session, promotion_id, survivor)
        session.execute(
            update(PromotionCustomerUsage)
            .where(PromotionCustomerUsage.promotion_id == promotion_id, PromotionCustomerUsage.customer_key == survivor)
            .values(used_count=PromotionCustomerUsage.used_count + count)
            .execution_options(synchronize_session=False)
        )
        session.add(
            PromotionUsageMerge(merge_id=merge_id, promotion_id=promotion_id, survivor_id=survivor, moved=count)
        )


def on_merge_undone(session: Session, payload: dict[str, Any]) -> None:
    merge_id = as_uuid(payload["merge_id"])
    moved = list(session.scalars(select(PromotionUsageMerge).where(PromotionUsageMerge.merge_id == merge_id)))
    for record in sorted(moved, key=lambda r: r.promotion_id):
        counter = PromotionCustomerUsage.used_count
        session.execute(
            update(PromotionCustomerUsage)
            .where(
                PromotionCustomerUsage.promotion_id == record.promotion_id,
                PromotionCustomerUsage.customer_key == record.survivor_id,
            )
            .values(used_count=at_least_zero(counter - record.moved))
            .execution_options(synchronize_session=False)
        )
        session.delete(record)


def at_least_zero(expression: Any) -> Any:
    """``max(expression, 0)`` on both databases: uses a cancelled order gave back meanwhile never make it negative."""
    return case((expression < 0, 0), else_=expression)


def register() -> None:
    from omnicanal import dispatch

    dispatch.subscribe("customer.merged", on_merged)
    dispatch.subscribe("customer.merge_undone", on_merge_undone)
