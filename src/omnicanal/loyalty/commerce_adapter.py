"""Loyalty wired to commerce: the lines a paid order earns on, and vouchers as coupons of the promotions engine.

Registered from :func:`omnicanal.handlers.register`. Commerce keys returns by SKU, so an order's lines are
given per SKU (lines sharing a SKU add up) and a return's ``sku`` finds the points that line earned. A line's
``category_ids`` hold the product's category and every ancestor, each by id and by slug, so a multiplier set
on "clothing" also pays on "shoes" below it.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from omnicanal import dispatch
from omnicanal.commerce import promotions
from omnicanal.commerce.models import Coupon, Order, OrderLine, Product, Promotion
from omnicanal.commerce.schemas import PromotionIn
from omnicanal.driver_sql import driver_rows, fetch_typed, uuid_from_db
from omnicanal.loyalty import earning, queries, rewards
from omnicanal.loyalty.models import LoyaltyReward

VOUCHER_PROMOTION_PREFIX = "Loyalty reward: "


# Category id -> the ids and slugs of it and all its ancestors, per engine. Categories are only ever added, never
# moved, renamed or deleted, so the tree is read again only when an order names a category it does not hold.
_paths_cache: weakref.WeakKeyDictionary[Engine, dict[uuid.UUID, list[str]]] = weakref.WeakKeyDictionary()


def _category_paths(session: Session, category_ids: set[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """Category id -> the ids and slugs of it and all its ancestors."""
    if not category_ids:
        return {}
    engine = session.get_bind().engine
    cached = _paths_cache.get(engine)
    if cached is None or not category_ids <= cached.keys():
        tree = {uuid_from_db(cid): (uuid_from_db(parent) if parent is not None else None, slug)
                for cid, parent, slug in driver_rows(session, _CATEGORY_TREE, ())}  # fmt: skip
        paths: dict[uuid.UUID, list[str]] = {}
        for start in tree:
            path: list[str] = []
            current: uuid.UUID | None = start
            while current is not None and current in tree and str(current) not in path:
                parent, slug = tree[current]
                path += [str(current), slug]
                current = parent
            paths[start] = path
        cached = _paths_cache[engine] = paths
    return {cid: cached.get(cid, []) for cid in category_ids}


_CATEGORY_TREE = "SELECT id, parent_id, slug FROM commerce_categories"


def _build_order_lines(dialect: str) -> Any:
    """Each line of the orders ``ids`` with its product's category now (every batch of paid orders asks)."""
    line, product = OrderLine.__table__.c, Product.__table__.c
    return (
        select(line.order_id, line.sku, line.product_id, product.category_id, line.quantity, line.total)
        .select_from(OrderLine.__table__.outerjoin(Product.__table__, product.id == line.product_id))
        .where(queries.among_param(dialect, line.order_id, "ids"))
        .order_by(line.order_id, line.position)
    )


def order_lines(session: Session, payloads: Sequence[Mapping[str, Any]]) -> list[Sequence[Mapping[str, Any]] | None]:
    """The lines of each payload's commerce order, one per SKU, worth what the customer paid for them (no
    shipping); None for a payload that names no commerce order (it earns as a whole, on what was paid)."""
    order_ids: list[uuid.UUID | None] = []
    for payload in payloads:
        try:
            order_ids.append(uuid.UUID(str(payload["order_id"])))
        except (KeyError, ValueError):
            order_ids.append(None)
    wanted = list(dict.fromkeys(order_id for order_id in order_ids if order_id is not None))
    session.flush()  # the lines read below are the transaction's
    rows_of: dict[uuid.UUID, list[tuple[Any, ...]]] = {}
    if wanted:
        dialect = session.get_bind().dialect.name
        statement = queries.prebuilt(dialect, "commerce.order_lines", _build_order_lines)
        for order_id, *row in fetch_typed(session, statement, {"ids": queries.among_value(dialect, wanted)}):
            rows_of.setdefault(order_id, []).append(tuple(row))
    paths = _category_paths(session, {row[2] for rows in rows_of.values() for row in rows if row[2] is not None})
    answers: list[Sequence[Mapping[str, Any]] | None] = []
    for order_id in order_ids:
        rows = rows_of.get(order_id) if order_id is not None else None
        if rows is None and (order_id is None or session.get(Order, order_id) is None):
            answers.append(None)
        else:
            answers.append(_by_sku(rows or [], paths))
    return answers


def _by_sku(rows: list[tuple[Any, ...]], paths: Mapping[uuid.UUID, list[str]]) -> list[Mapping[str, Any]]:
    by_sku: dict[str, dict[str, Any]] = {}
    for sku, product_id, category, quantity, total in rows:
        line = by_sku.setdefault(
            sku,
            {
                "line_id": sku,
                "sku": sku,
                "product_id": str(product_id),
                "category_ids": paths.get(category, []) if category is not None else [],
                "quantity": 0,
                "amount": 0,
            },
        )
        line["quantity"] += int(quantity)
        line["amount"] += int(total)
    return list(by_sku.values())


def _voucher_promotion(session: Session, voucher: rewards.Voucher) -> Promotion:
    """The promotion behind a voucher reward: found by name and value, or created (cart-wide, coupon only)."""
    name = (VOUCHER_PROMOTION_PREFIX + voucher.reward_name)[:200]
    value = voucher.value
    if value.get("percent") is not None:
        data = PromotionIn(name=name, kind="percentage", percent=float(value["percent"]), requires_coupon=True)
    else:
        data = PromotionIn(
            name=name, kind="fixed", amount=int(value["amount"]), currency=str(value["currency"]), requires_coupon=True
        )
    wanted = (
        {"percent_bp": round(data.percent * 100)}
        if data.percent is not None
        else {"amount": data.amount, "currency": data.currency}
    )
    found = _find_promotion(session, name, data.kind, wanted)
    if found is None and session.get_bind().dialect.name == "postgresql":
        # Two first redemptions of a reward at once would create two promotions: the second waits on the
        # reward's row, then finds the first one's. Later redemptions find it without waiting.
        session.execute(select(LoyaltyReward.id).where(LoyaltyReward.name == voucher.reward_name).with_for_update())
        found = _find_promotion(session, name, data.kind, wanted)
    if found is not None:
        return found
    return promotions.save_promotion(session, data)


def _find_promotion(session: Session, name: str, kind: str, wanted: Mapping[str, Any]) -> Promotion | None:
    for promotion in session.scalars(
        select(Promotion).where(Promotion.name == name, Promotion.kind == kind, Promotion.active.is_(True))
    ):
        rules = promotion.rules or {}
        unconditional = not any(rules.get(k) for k in ("skus", "product_ids", "categories", "segments", "channels",
                                                      "min_subtotal", "min_quantity"))  # fmt: skip
        same = all(rules.get(k) == v for k, v in wanted.items())
        if promotion.scope == "cart" and promotion.requires_coupon and unconditional and same:
            return promotion
    return None


class CommerceCoupons:
    """Vouchers as single-use coupons, so the code works in every channel's quote and checkout."""

    def issue(self, session: Session, voucher: rewards.Voucher) -> str:
        promotion = _voucher_promotion(session, voucher)
        code = rewards.new_code("LV-")
        promotions.add_coupons(session, promotion, [code], usage_limit=1)
        return code

    def void(self, session: Session, code: str) -> bool:
        coupon = session.get(Coupon, promotions.normalize_code(code))
        if coupon is None:  # issued before the wiring, by the built-in issuer
            return rewards.BuiltinCoupons().void(session, code)
        if coupon.used_count > 0:
            return False
        session.delete(coupon)
        session.flush()
        return True


def _collected(session: Session, payload: dict[str, Any]) -> None:
    # A pickup paid at the counter after it was made ready never passes through "paid": it earns when collected
    # (an order that earned when paid earns nothing more: its key is taken).
    earning.earn_paid_orders(session, [payload])


def register() -> None:
    earning.set_order_lines_provider(order_lines)
    rewards.set_coupon_issuer(CommerceCoupons())
    dispatch.subscribe("order.collected", _collected)
