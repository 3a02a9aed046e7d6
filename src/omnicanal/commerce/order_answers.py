"""What the API answers about an order and its payments: the models of ``schemas``, and the same answers as
JSON values for the order path's writer.

The writer stores a new order's or payment's answer as its idempotent answer inside the writers' turn, where
building the models and dumping them cost a tenth of placing the order (bench/commerce.py, K1). Both forms are
made from the same values; tests hold them to one answer (tests/commerce/test_orders.py and
tests/commerce/test_payments_fulfillment.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.commerce.checkout import line_json
from omnicanal.commerce.models import Fulfillment, Order, OrderLine, Payment
from omnicanal.commerce.orders import lines_of
from omnicanal.commerce.schemas import OrderOut, PaymentOut
from omnicanal.settings import Settings


def order_out(session: Session, order: Order, *, settings: Settings | None = None) -> OrderOut:
    lines = [line_json(_line_values(line)) for line in lines_of(session, order.id)]
    payments = session.scalars(select(Payment).where(Payment.order_id == order.id).order_by(Payment.created_at))
    fulfillments = session.scalars(
        select(Fulfillment).where(Fulfillment.order_id == order.id).order_by(Fulfillment.created_at)
    )
    return OrderOut(
        **_order_values(
            order,
            lines,
            payments=[_payment_values(payment, settings) for payment in payments],
            fulfillments=[_fulfillment_values(fulfillment) for fulfillment in fulfillments],
        )
    )


def placed_order_json(order: Order, placed_lines: list[dict[str, Any]]) -> dict[str, Any]:
    """``order_out(...).model_dump(mode="json")`` of an order placed in this transaction (nothing paid, shipped
    or collected yet), from the rows of its lines as they were inserted."""
    assert order.paid_amount == 0
    values = _order_values(order, [line_json(line) for line in placed_lines], payments=[], fulfillments=[])
    times = {"created_at": _json_time(order.created_at), "updated_at": _json_time(order.updated_at)}
    return values | {"customer_id": str(order.customer_id), "id": str(order.id)} | times


def payment_out(payment: Payment, settings: Settings | None = None) -> PaymentOut:
    return PaymentOut(**_payment_values(payment, settings))


def payment_json(payment: Payment, settings: Settings) -> dict[str, Any]:
    """``payment_out(payment, settings).model_dump(mode="json")``."""
    values = _payment_values(payment, settings)
    refund_of = values["refund_of"]
    return values | {"id": str(values["id"]), "refund_of": str(refund_of) if refund_of else None,
                     "created_at": _json_time(values["created_at"])}  # fmt: skip


def _order_values(
    order: Order, lines: list[dict[str, Any]], *, payments: list[dict[str, Any]], fulfillments: list[dict[str, Any]]
) -> dict[str, Any]:
    """The fields of ``OrderOut``, in its order (the JSON answer's)."""
    pickup = None
    if order.fulfillment_type == "pickup":
        expires = order.pickup_expires_at
        pickup = {"store_id": str(order.location_id), "ready": order.pickup_code is not None,
                  "expires_at": expires.isoformat() if expires else None}  # fmt: skip
    return {
        "customer_id": order.customer_id,
        "channel": order.channel,
        "currency": order.currency,
        "lines": lines,
        "subtotal": order.subtotal,
        "discount": order.discount,
        "tax": order.tax,
        "shipping": order.shipping,
        "shipping_discount": order.shipping_discount,
        "total": order.total,
        "prices_include_tax": order.prices_include_tax,
        "promotions": order.promotions or [],
        "id": order.id,
        "number": order.number,
        "status": order.status,
        "payment_status": order.payment_status,
        "paid_amount": order.paid_amount,
        "refunded_amount": order.refunded_amount,
        "balance_due": order.total - order.paid_amount,
        "fulfillment": {
            "type": order.fulfillment_type,
            "store_id": str(order.location_id) if order.location_id else None,
            "address": order.address or None,
        },
        "coupon_codes": order.coupon_codes or [],
        "payments": payments,
        "fulfillments": fulfillments,
        "pickup": pickup,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def _payment_values(payment: Payment, settings: Settings | None) -> dict[str, Any]:
    link = None
    if payment.link_token and settings is not None:
        link = f"{settings.commerce_public_url.rstrip('/')}/pay/{payment.link_token}"
    return {
        "id": payment.id,
        "kind": payment.kind,
        "method": payment.method,
        "status": payment.status,
        "amount": payment.amount,
        "currency": payment.currency,
        "reference": payment.reference,
        "refund_of": payment.refund_of,
        "link_url": link,
        "created_at": payment.created_at,
    }


def _fulfillment_values(fulfillment: Fulfillment) -> dict[str, Any]:
    return {
        "id": fulfillment.id,
        "type": fulfillment.type,
        "status": fulfillment.status,
        "location_id": fulfillment.location_id,
        "carrier": fulfillment.carrier,
        "tracking_number": fulfillment.tracking_number,
        "lines": fulfillment.lines or [],
        "created_at": fulfillment.created_at,
    }


def _line_values(line: OrderLine) -> dict[str, Any]:
    return {
        "sku": line.sku,
        "name": line.name,
        "quantity": line.quantity,
        "unit_price": line.unit_price,
        "price_channel": line.price_channel,
        "subtotal": line.subtotal,
        "discount": line.discount,
        "discounts": line.discounts or [],
        "tax": line.tax,
        "tax_rate": line.tax_rate,
        "total": line.total,
    }


def _json_time(value: datetime) -> str:
    """A UTC datetime as pydantic writes it in JSON (``Z`` for the offset)."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
