"""Store credit as a way to pay: what a return refunded as credit pays for a later order, on any channel.

The credit is a ledger (``commerce_store_credit``): a return adds an entry, a payment with method
``store_credit`` adds a negative one, a refund of such a payment gives it back. The balance is the sum of
a customer's entries in a currency and never goes below zero: spending locks the customer's credit in that
currency (an advisory lock on PostgreSQL; SQLite has one writer) before it reads the balance. Entries are
customer-owned rows, so a merge pools two customers' credit and undoing it gives each their own back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.commerce.models import Order, StoreCredit
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow, uuid7
from omnicanal.errors import Conflict
from omnicanal.web import ReadSession, require

METHOD = "store_credit"


class NotEnoughCredit(Conflict):
    slug = "not-enough-store-credit"
    title = "Not enough store credit"


def _lock(session: Session, customer_id: uuid.UUID, currency: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"store-credit:{customer_id}:{currency}"},
        )


def balance(session: Session, customer_id: uuid.UUID, currency: str) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(StoreCredit.amount), 0)).where(
                StoreCredit.customer_id == customer_id, StoreCredit.currency == currency
            )
        )
        or 0
    )


def spend(session: Session, *, order: Order, amount: int, payment_id: uuid.UUID) -> int:
    """Take ``amount`` of the order's customer's credit for a payment; the balance left, or NotEnoughCredit."""
    _lock(session, order.customer_id, order.currency)
    available = balance(session, order.customer_id, order.currency)
    if amount > available:
        raise NotEnoughCredit(
            f"the customer has {available} {order.currency} of store credit; {amount} was asked",
            available=available,
            currency=order.currency,
        )
    session.add(
        StoreCredit(
            id=uuid7(), customer_id=order.customer_id, source_customer_id=order.customer_id, amount=-amount,
            currency=order.currency, reason=f"payment {payment_id} of order {order.number}", created_at=utcnow(),
        )
    )  # fmt: skip
    return available - amount


def give_back(session: Session, *, order: Order, amount: int, refund_id: uuid.UUID) -> None:
    """A refund of a store credit payment returns to the credit it was paid with."""
    session.add(
        StoreCredit(
            id=uuid7(), customer_id=order.customer_id, source_customer_id=order.customer_id, amount=amount,
            currency=order.currency, reason=f"refund {refund_id} of order {order.number}", created_at=utcnow(),
        )
    )  # fmt: skip


class CreditEntryOut(BaseModel):
    amount: int
    currency: str
    reason: str
    return_id: uuid.UUID | None
    created_at: datetime


class CreditBalanceOut(BaseModel):
    currency: str
    balance: int


class StoreCreditOut(BaseModel):
    customer_id: uuid.UUID
    balances: list[CreditBalanceOut]
    entries: list[CreditEntryOut]


router = APIRouter(prefix="/api/v1", tags=["commerce"])
Reader = Annotated[Principal, Depends(require(Permission.ORDERS_READ))]


@router.get("/customers/{customer_id}/store-credit", response_model=StoreCreditOut)
def customer_store_credit(customer_id: uuid.UUID, session: ReadSession, _: Reader) -> StoreCreditOut:
    """The customer's store credit per currency, and every movement (latest first); pay with it as
    ``{"method": "store_credit", "amount"}`` on ``POST /api/v1/orders/{id}/payments``."""
    customer = get_customer(session, customer_id, follow_merges=True)
    rows = list(
        session.scalars(
            select(StoreCredit).where(StoreCredit.customer_id == customer.id).order_by(StoreCredit.created_at.desc())
        )
    )
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.currency] = totals.get(row.currency, 0) + row.amount
    return StoreCreditOut(
        customer_id=customer.id,
        balances=[CreditBalanceOut(currency=c, balance=b) for c, b in sorted(totals.items())],
        entries=[CreditEntryOut.model_validate(row, from_attributes=True) for row in rows],
    )
