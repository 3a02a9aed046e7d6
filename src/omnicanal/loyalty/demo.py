"""The loyalty part of ``omnicanal demo``: a programme, tiers, rewards, codes and a few wallets with history."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from omnicanal.customers.models import Customer
from omnicanal.db import utcnow
from omnicanal.loyalty import codes, earning, rewards, service, tiers
from omnicanal.loyalty.earning import LoyaltyEvent
from omnicanal.loyalty.schemas import RuleIn


def load_demo_loyalty(session: Session) -> str:
    rules: list[dict[str, Any]] = [
        {"name": "1 punto por euro", "kind": "spend", "points": 1, "per_amount": 100,
         "category_multipliers": {"ropa": 2}},
        {"name": "Alta en email o SMS", "kind": "event", "event_type": "consent.granted", "points": 50,
         "once_per": ["channel"], "conditions": {"purpose": "marketing"}},
        {"name": "Encuesta respondida", "kind": "event", "event_type": "survey.answered", "points": 20},
        {"name": "Compartir en redes", "kind": "event", "event_type": "social.share", "points": 10,
         "caps": {"week": 30}},
        {"name": "Visita a la web", "kind": "event", "event_type": "visit", "points": 2, "caps": {"day": 2}},
        {"name": "Cumpleaños", "kind": "event", "event_type": "birthday", "points": 100},
        {"name": "Recomendar (quien recomienda)", "kind": "event", "event_type": "referral.referrer", "points": 200},
        {"name": "Recomendar (recomendado)", "kind": "event", "event_type": "referral.referred", "points": 100},
    ]  # fmt: skip
    for rule in rules:
        service.create_rule(session, RuleIn.model_validate(rule))
    tiers.create_tier(session, {"name": "Plata", "threshold": 300, "multiplier": 1.25, "retention_threshold": 250})
    tiers.create_tier(session, {"name": "Oro", "threshold": 1000, "multiplier": 1.5, "retention_threshold": 800})
    for reward in (
        {"name": "Vale de 5 €", "kind": "voucher", "cost_points": 500, "value": {"amount": 500, "currency": "EUR"}},
        {"name": "10 % de descuento", "kind": "voucher", "cost_points": 800, "value": {"percent": 10}},
        {"name": "Muestra de crema", "kind": "product", "cost_points": 150, "stock": 40},
        {"name": "Entrada de cine", "kind": "external", "cost_points": 900, "supplier_ref": "CINE-2X1"},
        {"name": "Neceser exclusivo Oro", "kind": "product", "cost_points": 600, "stock": 10, "tiers": ["Oro"]},
    ):
        rewards.create_reward(session, reward)
    printed = codes.generate(session, batch="demo-envases", count=5, points=25)
    customers = list(
        session.scalars(select(Customer.id).where(Customer.merged_into_id.is_(None)).order_by(Customer.created_at))
    )[:12]
    now = utcnow()
    orders = []
    for index, customer_id in enumerate(customers):
        for n in range(1 + index % 3):
            amount = 2500 + 1700 * ((index + n) % 5)
            orders.append({
                "order_id": f"demo-{index}-{n}", "customer_id": str(customer_id),
                "channel": ("web", "pos", "app")[n % 3], "currency": "EUR",
                "paid_at": (now - timedelta(days=40 - 10 * n)).isoformat(),
                "lines": [{"line_id": "TEE-M", "sku": "TEE-M", "product_id": "camiseta", "category_ids": ["ropa"],
                           "quantity": 1, "amount": amount}],
            })  # fmt: skip
    earning.earn_paid_orders(session, orders)
    events = [LoyaltyEvent(f"demo-survey-{i}", c, "survey.answered", {}, "email") for i, c in enumerate(customers[:6])]
    events += [LoyaltyEvent(f"demo-share-{i}", c, "social.share", {"network": "instagram"}, "social")
               for i, c in enumerate(customers[:4])]  # fmt: skip
    earning.earn_events(session, events)
    if customers:
        service.adjust(session, customer_id=customers[0], points=400, reason="Compensación por retraso en la entrega",
                       request_id=f"demo-{uuid.uuid4().hex}", actor="demo")  # fmt: skip
    return f"Loyalty: 8 earning rules, tiers Plata/Oro, 5 rewards; purchase codes to try: {', '.join(printed[:3])}"
