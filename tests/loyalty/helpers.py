from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omnicanal import dispatch
from omnicanal.db import Database, utcnow
from omnicanal.loyalty.models import LoyaltyEntry, LoyaltyLot


def new_customer(client: TestClient, email: str | None = None, **traits: Any) -> str:
    email = email or f"c{uuid.uuid4().hex[:10]}@example.com"
    response = client.post(
        "/api/v1/customers", json={"identities": [{"type": "email", "value": email}], "traits": traits}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def spend_rule(client: TestClient, **extra: Any) -> dict[str, Any]:
    body = {"name": "1 point per euro", "kind": "spend", "points": 1, "per_amount": 100, **extra}
    response = client.post("/api/v1/loyalty/rules", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def event_rule(client: TestClient, event_type: str, points: int, **extra: Any) -> dict[str, Any]:
    body = {"name": f"{event_type} bonus", "kind": "event", "event_type": event_type, "points": points, **extra}
    response = client.post("/api/v1/loyalty/rules", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def referral(client: TestClient) -> tuple[str, str, str]:
    """A spend rule, referral rewards of 200 (referrer) and 100 (referred), and a newcomer who signed up with a
    friend's code: (friend, newcomer, code)."""
    spend_rule(client)
    event_rule(client, "referral.referrer", 200)
    event_rule(client, "referral.referred", 100)
    friend, newcomer = new_customer(client), new_customer(client)
    code = client.post(f"/api/v1/customers/{friend}/loyalty/referral-code").json()["referral_code"]
    signup = {"id": "signup-1", "customer_id": newcomer, "type": "referral.signup", "properties": {"code": code}}
    assert client.post("/api/v1/loyalty/events", json=signup).status_code == 200
    return friend, newcomer, str(code)


def order(
    customer_id: str,
    order_id: str,
    *lines: tuple[str, int, int],
    paid_at: datetime | None = None,
    channel: str = "web",
    **line_extra: Any,
) -> dict[str, Any]:
    """``lines``: (line_id, quantity, amount in minor units)."""
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "channel": channel,
        "currency": "EUR",
        "paid_at": (paid_at or utcnow()).isoformat(),
        "lines": [
            {
                "line_id": lid,
                "sku": f"SKU-{lid}",
                "product_id": f"P-{lid}",
                "category_ids": [],
                "quantity": q,
                "amount": a,
                **line_extra,
            }
            for lid, q, a in lines
        ],
    }


def publish(db: Database, name: str, payload: dict[str, Any]) -> None:
    with db.write() as session:
        dispatch.publish(session, name, payload)


def wallet(client: TestClient, customer_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/customers/{customer_id}/loyalty")
    assert response.status_code == 200, response.text
    return dict(response.json())


def ledger_sum(db: Database, customer_id: str) -> tuple[int, int]:
    """(sum of the customer's ledger entries, sum of their lots' remaining points)."""
    cid = uuid.UUID(customer_id)
    with db.read() as session:
        entries = session.scalar(
            select(func.coalesce(func.sum(LoyaltyEntry.points), 0)).where(LoyaltyEntry.customer_id == cid)
        )
        lots = session.scalar(
            select(func.coalesce(func.sum(LoyaltyLot.remaining), 0)).where(LoyaltyLot.customer_id == cid)
        )
    return int(entries or 0), int(lots or 0)


def make_available(db: Database, customer_id: str) -> None:
    """Test shortcut for the end of the return window: pending lots (and their entries) become available now."""
    from sqlalchemy import update

    cid = uuid.UUID(customer_id)
    now = utcnow()
    with db.write() as session:
        session.execute(update(LoyaltyLot).where(LoyaltyLot.customer_id == cid).values(available_from=now))
        session.execute(update(LoyaltyEntry).where(LoyaltyEntry.customer_id == cid).values(available_from=now))
