"""Payments and refunds recorded against an order: card, cash, bank transfer, payment link, wallet.

``paid_amount`` and ``refunded_amount`` change only by conditional updates, so two payments racing
for the last euro of an order cannot both be taken, nor can refunds exceed what was paid.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from omnicanal.commerce import lifecycle, store_credit, stores
from omnicanal.commerce.models import Order, Payment, Return
from omnicanal.commerce.orders import get_order
from omnicanal.commerce.rows import insert_loaded, table_of
from omnicanal.commerce.schemas import PaymentIn
from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import run_statement
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.settings import Settings


def _payment_status(order: Order) -> str:
    return _payment_status_of(order.paid_amount, order.total, order.refunded_amount)


def _payment_status_of(paid: int, total: int, refunded: int) -> str:
    if refunded > 0:
        return "refunded" if refunded >= paid else "partially_refunded"
    if paid >= total:
        return "paid"
    return "partially_paid" if paid > 0 else "unpaid"


def record_payment(
    session: Session, *, order_id: uuid.UUID, data: PaymentIn, settings: Settings, actor: str
) -> Payment:
    return record_payment_on(session, order_id=order_id, data=data, settings=settings, actor=actor)[0]


def record_payment_on(
    session: Session, *, order_id: uuid.UUID, data: PaymentIn, settings: Settings, actor: str
) -> tuple[Payment, Order]:
    """:func:`record_payment`, and the order as it stands after it (the session holds it only weakly)."""
    if data.kind == "refund":
        payment = refund(
            session,
            order_id=order_id,
            amount=data.amount,
            refund_of=data.refund_of,
            actor=actor,
            reference=data.reference,
        )
        return payment, get_order(session, order_id)
    if data.method is None:
        raise ValidationFailed.on_field("method", "a payment needs its method")
    order = get_order(session, order_id, for_update=True)
    if order.status in ("cancelled", "expired"):
        raise lifecycle.IllegalTransition(
            f"cannot take a payment: the order is {order.status}", order_status=order.status
        )
    due = order.total - order.paid_amount
    if data.amount > due:
        raise ValidationFailed.on_field("amount", f"is more than the balance due ({due} {order.currency})")
    link = data.method == "payment_link"  # captured when the customer pays through the link
    payment = insert_loaded(
        session,
        Payment,
        {
            "id": uuid7(),
            "order_id": order.id,
            "customer_id": order.customer_id,
            "source_customer_id": order.customer_id,
            "kind": "payment",
            "method": data.method,
            "status": "pending" if link else "captured",
            "amount": data.amount,
            "currency": order.currency,
            "reference": data.reference,
            "refund_of": None,
            "link_token": secrets.token_urlsafe(24) if link else None,
            "created_by": actor,
            "created_at": utcnow(),
        },
    )
    if link:
        lifecycle.announce(
            session,
            order,
            "order.payment_requested",
            actor=actor,
            amount=data.amount,
            link=f"{settings.commerce_public_url.rstrip('/')}/pay/{payment.link_token}",
        )
        return payment, order
    if data.method == store_credit.METHOD:
        store_credit.spend(session, order=order, amount=data.amount, payment_id=payment.id)
    _capture(session, order, payment, settings=settings, actor=actor)
    return payment, order


def capture_link(session: Session, *, payment_id: uuid.UUID, settings: Settings, actor: str) -> Payment:
    """The customer paid through the link (the provider said so): the payment counts now."""
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"payment {payment_id} not found")
    order = get_order(session, payment.order_id, for_update=True)
    # read again under the order's lock: a confirmation that got there first has captured it meanwhile
    session.refresh(payment)
    if payment.status != "pending":
        raise Conflict(f"this payment is {payment.status}, not waiting for the customer")
    payment.status = "captured"
    _capture(session, order, payment, settings=settings, actor=actor)
    return payment


def _capture(session: Session, order: Order, payment: Payment, *, settings: Settings, actor: str) -> None:
    now = utcnow()
    session.flush()  # the payment and any change to the order go first
    # the order was read in this write transaction (locked on PostgreSQL, the only writer on SQLite): its paid
    # amount is current, so the statuses it reaches are known before the one UPDATE that checks and changes it
    paid = order.paid_amount + payment.amount
    settled = paid >= order.total and order.status == "pending"
    if settled:
        lifecycle.check(order, "paid", action="mark the order paid")
    changes = {"paid_amount": paid, "updated_at": now,
               "payment_status": _payment_status_of(paid, order.total, order.refunded_amount)}  # fmt: skip
    if settled:
        changes["status"] = "paid"
    statement = _SETTLE if settled else _ADD_PAID
    if run_statement(session, statement, {"b_id": order.id, "amount": payment.amount, **changes}) != 1:
        raise Conflict("another payment has just settled this order; nothing was charged")
    for name, value in changes.items():
        set_committed_value(order, name, value)
    if settled:
        # paid: the stock stays reserved until it leaves (a pickup's hold gets its own deadline when ready)
        stores.set_expiry(session, order.id, None)
        lifecycle.moved(session, order, previous="pending", actor=actor, method=payment.method, amount=payment.amount)
    else:
        lifecycle.announce(
            session, order, "order.payment_received", actor=actor, method=payment.method, amount=payment.amount
        )
    if order.paid_amount < order.total and order.status == "pending":
        # a partial payment keeps the hold alive a while longer
        stores.set_expiry(session, order.id, utcnow() + timedelta(minutes=settings.commerce_reservation_minutes))


_order = table_of(Order).c
# the check and the change in one statement: two payments racing for the last euro cannot both be taken
_ADD_PAID = (
    update(table_of(Order))
    .where(_order.id == bindparam("b_id"), _order.paid_amount + bindparam("amount") <= _order.total)
    .values(
        paid_amount=_order.paid_amount + bindparam("amount"),
        updated_at=bindparam("updated_at"),
        payment_status=bindparam("payment_status"),
    )
)
# the payment that settles a pending order also marks it paid (lifecycle.check allowed it)
_SETTLE = _ADD_PAID.values(status=bindparam("status"))


def refund(
    session: Session,
    *,
    order_id: uuid.UUID,
    amount: int,
    actor: str,
    refund_of: uuid.UUID | None = None,
    reference: str = "",
    announce: bool = True,
) -> Payment:
    """Money back to the payment it came from (the latest payments first unless one is named)."""
    order = get_order(session, order_id, for_update=True)
    refundable = refundable_amount(session, order)
    if amount > refundable:
        raise ValidationFailed.on_field("amount", f"is more than what can be refunded ({refundable} {order.currency})")
    captured = list(
        session.scalars(
            select(Payment)
            .where(Payment.order_id == order.id, Payment.kind == "payment", Payment.status == "captured")
            .order_by(Payment.created_at.desc())
        )
    )
    refunded_per: dict[uuid.UUID, int] = {}
    for row in session.scalars(select(Payment).where(Payment.order_id == order.id, Payment.kind == "refund")):
        if row.refund_of is not None:
            refunded_per[row.refund_of] = refunded_per.get(row.refund_of, 0) + row.amount
    if refund_of is not None:
        captured = [p for p in captured if p.id == refund_of]
        if not captured:
            raise ValidationFailed.on_field("refund_of", "is not a captured payment of this order")
    result = session.execute(
        update(Order)
        .where(Order.id == order.id, Order.refunded_amount + amount <= Order.paid_amount)
        .values(refunded_amount=Order.refunded_amount + amount, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise Conflict("another refund has just been taken on this order; nothing was refunded")
    remaining = amount
    first: Payment | None = None
    now = utcnow()
    for payment in captured:
        room = payment.amount - refunded_per.get(payment.id, 0)
        take = min(room, remaining)
        if take <= 0:
            continue
        row = Payment(
            id=uuid7(),
            order_id=order.id,
            customer_id=order.customer_id,
            source_customer_id=order.customer_id,
            kind="refund",
            method=payment.method,
            status="captured",
            amount=take,
            currency=order.currency,
            reference=reference,
            refund_of=payment.id,
            created_by=actor,
            created_at=now,
        )
        session.add(row)
        if payment.method == store_credit.METHOD:
            store_credit.give_back(session, order=order, amount=take, refund_id=row.id)
        first = first or row
        remaining -= take
        if remaining == 0:
            break
    if remaining > 0 or first is None:
        raise ValidationFailed.on_field("refund_of", "that payment has less left to refund")
    session.flush()
    session.refresh(order)
    order.payment_status = _payment_status(order)
    if announce:
        lifecycle.announce(session, order, "order.refunded", actor=actor, amount=amount)
    return first


def _given_back_for_returns(session: Session, order: Order, refund_method: str) -> int:
    """What the order's returns gave back through ``refund_method`` ("original" or store credit)."""
    given = session.scalar(
        select(func.coalesce(func.sum(Return.refund_amount), 0)).where(
            Return.order_id == order.id, Return.refund_method == refund_method
        )
    )
    return int(given or 0)


def refundable_amount(session: Session, order: Order) -> int:
    """What is left to give back of what was paid: neither refunded nor already given back as store credit."""
    return order.paid_amount - order.refunded_amount - _given_back_for_returns(session, order, store_credit.METHOD)


def money_due(session: Session, order: Order) -> int:
    """What the customer still owes before goods leave: the total less what was paid and kept.

    Money given back for a return does not count against the goods still to leave; money given back without
    one (a refund before shipping) does, so a refunded order is not shipped or handed over for nothing.
    """
    due = order.total - order.paid_amount
    if order.refunded_amount == 0:
        return due
    return due + order.refunded_amount - _given_back_for_returns(session, order, "original")


def refund_everything(session: Session, order: Order, *, actor: str, reason: str) -> int:
    refundable = refundable_amount(session, order)
    if refundable > 0:
        refund(session, order_id=order.id, amount=refundable, actor=actor, reference=reason, announce=False)
    for pending in session.scalars(select(Payment).where(Payment.order_id == order.id, Payment.status == "pending")):
        pending.status = "cancelled"
    return refundable
