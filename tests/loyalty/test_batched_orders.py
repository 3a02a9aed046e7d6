"""Orders paid together in one transaction (the ingest writer's batches) earn as if paid one after another."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from omnicanal import dispatch
from omnicanal.db import Database
from tests.loyalty.helpers import new_customer, order, publish, referral, spend_rule, wallet


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


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 200)), min_size=1, max_size=8))
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_batch_earns_what_the_same_orders_paid_one_by_one_earn(
    client: TestClient, db: Database, paid: list[tuple[int, int]]
) -> None:
    """Any orders of up to three customers, paid in one batch or one transaction each: the same points and tiers
    (Silver at 100 points, x1.5; Gold at 250, x2), whatever the order in which they come."""
    if not client.get("/api/v1/loyalty/tiers").json():
        spend_rule(client)
        for body in ({"name": "Silver", "threshold": 100, "multiplier": 1.5, "window_days": 365},
                     {"name": "Gold", "threshold": 250, "multiplier": 2.0, "window_days": 365}):  # fmt: skip
            assert client.post("/api/v1/loyalty/tiers", json=body).status_code == 201
    alone, together = [new_customer(client) for _ in range(3)], [new_customer(client) for _ in range(3)]
    for n, (who, euros) in enumerate(paid):
        publish(db, "order.paid", order(alone[who], f"{alone[who]}-{n}", ("a", 1, euros * 100)))
    batch = [order(together[who], f"{together[who]}-{n}", ("a", 1, euros * 100)) for n, (who, euros) in enumerate(paid)]
    paid_together(db, *batch)
    for one, other in zip(alone, together, strict=True):
        seen_alone, seen_together = wallet(client, one), wallet(client, other)
        assert (seen_together["pending"], seen_together["tier"]) == (seen_alone["pending"], seen_alone["tier"])
