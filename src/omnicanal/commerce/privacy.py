"""What commerce holds about a customer, exported and erased.

Erasure keeps the orders' amounts, lines and statuses (accounting needs them) and removes the personal
data they carry: delivery addresses, saved carts, return reasons and pickup codes.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from omnicanal.commerce.models import Cart, Order, OrderLine, Payment, Return, StoreCredit


def export_commerce(session: Session, tree: set[uuid.UUID]) -> Any:
    orders = list(session.scalars(select(Order).where(Order.customer_id.in_(tree)).order_by(Order.created_at)))
    ids = [order.id for order in orders]
    lines: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for line in session.scalars(select(OrderLine).where(OrderLine.order_id.in_(ids)).order_by(OrderLine.position)):
        lines.setdefault(line.order_id, []).append(
            {"sku": line.sku, "name": line.name, "quantity": line.quantity, "total": line.total}
        )
    payments: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for payment in session.scalars(select(Payment).where(Payment.order_id.in_(ids)).order_by(Payment.created_at)):
        payments.setdefault(payment.order_id, []).append(
            {
                "kind": payment.kind,
                "method": payment.method,
                "amount": payment.amount,
                "status": payment.status,
                "created_at": payment.created_at,
            }
        )
    return {
        "orders": [
            {
                "id": order.id,
                "number": order.number,
                "channel": order.channel,
                "status": order.status,
                "currency": order.currency,
                "total": order.total,
                "fulfillment": order.fulfillment_type,
                "address": order.address,
                "created_at": order.created_at,
                "lines": lines.get(order.id, []),
                "payments": payments.get(order.id, []),
            }
            for order in orders
        ],
        "carts": [
            {"channel": cart.channel, "request": cart.request, "updated_at": cart.updated_at}
            for cart in session.scalars(select(Cart).where(Cart.customer_id.in_(tree)))
        ],
        "returns": [
            {
                "order_id": r.order_id,
                "channel": r.channel,
                "lines": r.lines,
                "refund_amount": r.refund_amount,
                "refund_method": r.refund_method,
                "created_at": r.created_at,
            }
            for r in session.scalars(select(Return).where(Return.customer_id.in_(tree)))
        ],
        "store_credit": [
            {"amount": c.amount, "currency": c.currency, "reason": c.reason, "created_at": c.created_at}
            for c in session.scalars(select(StoreCredit).where(StoreCredit.customer_id.in_(tree)))
        ],
    }


def erase_commerce(session: Session, tree: set[uuid.UUID]) -> None:
    session.execute(delete(Cart).where(Cart.customer_id.in_(tree)).execution_options(synchronize_session=False))
    session.execute(
        update(Order)
        .where(Order.customer_id.in_(tree))
        .values(address={}, pickup_code=None)
        .execution_options(synchronize_session=False)
    )
    for record in session.scalars(select(Return).where(Return.customer_id.in_(tree))):
        record.lines = [{**line, "reason": ""} for line in record.lines or []]
