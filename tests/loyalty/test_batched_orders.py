"""Orders paid together in one transaction (the ingest writer's batches) earn as if paid one after another."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from omnicanal import dispatch
from omnicanal.db import Database
from tests.loyalty.helpers import new_customer, order, referral, spend_rule, wallet


def paid_together(db: Database, *payloads: dict[str, Any]) -> None:
    with db.write() as session, dispatch.batched(session):
        for payload in payloads:
            dispatch.publish(session, "order.paid", payload)


def test_the_second_order_of_a_batch_earns_at_the_tier_the_first_reached(client: TestClient, db: Database) -> None:
    spend_rule(client)
    body = {"name": "Silver", "threshold": 100, "multiplier": 1.5, "window_days": 365}
    assert client.post("/api/v1/loyalty/tiers", json=body).status_code == 201
    customer, other = new_customer(client), new_customer(client)
    paid_together(
        db,
        order(customer, "T-1", ("a", 1, 12000)),
        order(other, "O-1", ("a", 1, 5000)),
        order(customer, "T-2", ("a", 1, 10000)),
    )
    assert wallet(client, customer)["tier"] == "Silver"
    assert wallet(client, customer)["pending"] == 120 + 150  # the second order at Silver's x1.5
    assert wallet(client, other)["pending"] == 50


def test_two_first_orders_paid_together_still_reward_the_referral(client: TestClient, db: Database) -> None:
    friend, newcomer, _ = referral(client)
    paid_together(db, order(newcomer, "N-1", ("a", 1, 1000)), order(newcomer, "N-2", ("a", 1, 1000)))
    assert wallet(client, friend)["balance"] == 200
    assert wallet(client, newcomer)["balance"] == 100 and wallet(client, newcomer)["pending"] == 20
