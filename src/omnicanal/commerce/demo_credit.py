"""Demo: a bottle sent back by mail for store credit, and the credit paying part of an order in the app."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.commerce import fulfillment, orders, payments, returns, store_credit
from omnicanal.commerce.schemas import CartIn, PaymentIn, ReturnIn, ShipmentIn
from omnicanal.customers.models import Identity
from omnicanal.settings import Settings


def load_demo_store_credit(session: Session, settings: Settings, email: str) -> str:
    customer = session.scalar(select(Identity.customer_id).where(Identity.type == "email", Identity.value == email))

    def order(channel: str, sku: str, quantity: int) -> CartIn:
        return CartIn.model_validate({
            "customer_id": str(customer), "channel": channel, "lines": [{"sku": sku, "quantity": quantity}],
            "fulfillment": {"type": "delivery", "address": {"line1": "Calle Mayor 5", "city": "Madrid"}},
        })  # fmt: skip

    bottle = orders.create_order(session, order("web", "BOT-750", 1), settings=settings, actor="demo")
    payments.record_payment(session, order_id=bottle.id, data=PaymentIn(method="card", amount=bottle.total),
                            settings=settings, actor="demo")  # fmt: skip
    fulfillment.create_fulfillment(session, order_id=bottle.id, data=ShipmentIn(carrier="Correos"), settings=settings,
                                   actor="demo")  # fmt: skip
    back = ReturnIn.model_validate({
        "order_id": str(bottle.id), "channel": "mail", "refund_method": "store_credit",
        "lines": [{"sku": "BOT-750", "quantity": 1, "reason": "otro color", "condition": "new"}],
    })  # fmt: skip
    credit = returns.create_return(session, back, settings=settings, actor="demo").refund_amount
    later = orders.create_order(session, order("app", "TEE-S", 2), settings=settings, actor="demo")
    spent = credit // 2  # the rest is left to spend at the store counter
    payments.record_payment(session, order_id=later.id, data=PaymentIn(method="store_credit", amount=spent),
                            settings=settings, actor="demo")  # fmt: skip
    left = store_credit.balance(session, later.customer_id, later.currency)
    return (
        f"Store credit: {email} returned a bottle for {credit / 100:.2f} € of credit and paid part of app order "
        f"{later.number} with {spent / 100:.2f} € of it ({(later.total - spent) / 100:.2f} € still due); the "
        f"{left / 100:.2f} € left pay at the counter (/console/counter?customer={later.customer_id}, "
        f'"Store credit to use"); GET /api/v1/customers/{later.customer_id}/store-credit.'
    )
