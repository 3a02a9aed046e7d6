"""Earning from paid orders and events; returns; idempotency by source."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicanal.commerce.models import Coupon
from omnicanal.db import Database
from omnicanal.loyalty.models import LoyaltyRedemption
from omnicanal.settings import Settings
from tests.loyalty.helpers import (
    event_rule,
    ledger_sum,
    make_available,
    new_customer,
    order,
    publish,
    spend_rule,
    wallet,
)


def test_paid_order_earns_pending_points_once_however_often_it_is_sent(client: TestClient, db: Database) -> None:
    spend_rule(client)
    customer = new_customer(client)
    paid = order(customer, "POS-1", ("1", 2, 2550), ("2", 1, 1000), channel="pos")
    for _ in range(10):  # an offline POS re-syncing the same sale
        publish(db, "order.paid", paid)
    state = wallet(client, customer)
    assert state["balance"] == 0 and state["pending"] == 35  # 25.50 -> 25, 10.00 -> 10, per line, rounded down
    make_available(db, customer)
    assert wallet(client, customer)["balance"] == 35
    assert ledger_sum(db, customer) == (35, 35)


def test_returning_a_line_reverses_exactly_its_points(client: TestClient, db: Database) -> None:
    spend_rule(client)
    customer = new_customer(client)
    publish(db, "order.paid", order(customer, "W-1", ("a", 3, 3000), ("b", 1, 1999)))
    assert wallet(client, customer)["pending"] == 49
    publish(db, "order.returned", {"order_id": "W-1", "return_id": "R-1", "lines": [{"line_id": "a", "quantity": 1}]})
    publish(db, "order.returned", {"order_id": "W-1", "return_id": "R-1", "lines": [{"line_id": "a", "quantity": 1}]})
    assert wallet(client, customer)["pending"] == 39
    publish(db, "order.returned", {"order_id": "W-1", "return_id": "R-2", "lines": [{"line_id": "a", "quantity": 5}]})
    assert wallet(client, customer)["pending"] == 19  # line a gave back its 30 points, never more
    assert ledger_sum(db, customer) == (19, 19)


def test_return_after_spending_leaves_a_negative_wallet_that_later_points_pay_off(
    client: TestClient, db: Database
) -> None:
    spend_rule(client)
    reward = client.post("/api/v1/rewards", json={"name": "Sample", "kind": "product", "cost_points": 40}).json()
    customer = new_customer(client)
    publish(db, "order.paid", order(customer, "W-2", ("a", 1, 5000)))
    make_available(db, customer)
    redeemed = client.post(
        f"/api/v1/customers/{customer}/redemptions", json={"reward_id": reward["id"], "request_id": "r1"}
    )
    assert redeemed.status_code == 201, redeemed.text
    publish(db, "order.returned", {"order_id": "W-2", "return_id": "R-9", "lines": [{"line_id": "a", "quantity": 1}]})
    assert wallet(client, customer)["balance"] == -40
    publish(db, "order.paid", order(customer, "W-3", ("a", 1, 10000)))
    make_available(db, customer)
    assert wallet(client, customer)["balance"] == 60
    assert ledger_sum(db, customer) == (60, 60)


def test_consent_bonus_pays_once_per_channel_ever(client: TestClient, db: Database) -> None:
    event_rule(client, "consent.granted", 50, once_per=["channel"])
    customer = new_customer(client)
    for status in ("granted", "withdrawn", "granted"):
        response = client.put(
            f"/api/v1/customers/{customer}/consents/email/marketing", json={"status": status, "source": "web"}
        )
        assert response.status_code in (200, 201), response.text
    assert wallet(client, customer)["balance"] == 50
    client.put(f"/api/v1/customers/{customer}/consents/sms/marketing", json={"status": "granted", "source": "web"})
    assert wallet(client, customer)["balance"] == 100


def test_custom_events_are_idempotent_on_id_and_capped(client: TestClient, db: Database) -> None:
    event_rule(client, "visit", 5, caps={"day": 5})
    event_rule(client, "social.share", 20, conditions={"network": "instagram"})
    customer = new_customer(client)
    for n in range(3):
        response = client.post("/api/v1/loyalty/events", json={"id": f"v{n}", "customer_id": customer, "type": "visit"})
        assert response.status_code == 200, response.text
    share = {"id": "s1", "customer_id": customer, "type": "social.share", "properties": {"network": "instagram"}}
    assert client.post("/api/v1/loyalty/events", json=share).json()["points"] == 20
    assert client.post("/api/v1/loyalty/events", json=share).json()["points"] == 0
    other = {**share, "id": "s2", "properties": {"network": "elsewhere"}}
    assert client.post("/api/v1/loyalty/events", json=other).json()["points"] == 0
    assert wallet(client, customer)["balance"] == 25


def test_events_find_the_customer_by_identity(client: TestClient) -> None:
    event_rule(client, "survey.answered", 15)
    customer = new_customer(client, "ana@example.com")
    body = {"id": "q1", "identities": [{"type": "email", "value": "Ana@Example.com"}], "type": "survey.answered"}
    response = client.post("/api/v1/loyalty/events", json=body)
    assert response.status_code == 200 and response.json()["customer_id"] == customer
    unknown = client.post(
        "/api/v1/loyalty/events", json={**body, "id": "q2", "identities": [{"type": "email", "value": "x@example.com"}]}
    )
    assert unknown.status_code == 404


def test_clawback_policy_cancels_an_unused_voucher_before_going_negative(
    settings: Settings, client: TestClient, db: Database
) -> None:
    settings.loyalty_return_policy = "clawback"
    spend_rule(client)
    voucher = client.post(
        "/api/v1/rewards",
        json={"name": "5 EUR", "kind": "voucher", "cost_points": 40, "value": {"amount": 500, "currency": "EUR"}},
    ).json()
    customer = new_customer(client)
    publish(db, "order.paid", order(customer, "C-1", ("a", 1, 5000)))
    make_available(db, customer)
    code = client.post(
        f"/api/v1/customers/{customer}/redemptions", json={"reward_id": voucher["id"], "request_id": "v"}
    )
    assert code.status_code == 201
    publish(db, "order.returned", {"order_id": "C-1", "return_id": "CR-1", "lines": [{"line_id": "a", "quantity": 1}]})
    assert wallet(client, customer)["balance"] == 0
    assert ledger_sum(db, customer) == (0, 0)
    with db.read() as session:
        assert session.get(Coupon, code.json()["code"]) is None  # the unused coupon is gone
        assert session.scalar(select(LoyaltyRedemption.status)) == "clawed_back"


def test_spend_rules_follow_channels_and_multipliers(client: TestClient, db: Database) -> None:
    spend_rule(client, channels=["pos"], category_multipliers={"beauty": 3})
    customer = new_customer(client)
    publish(db, "order.paid", order(customer, "S-1", ("a", 1, 1000), channel="web"))
    publish(db, "order.paid", order(customer, "S-2", ("a", 1, 1000), channel="pos", category_ids=["beauty"]))
    assert wallet(client, customer)["pending"] == 30


def test_commerce_shaped_events_without_lines_earn_and_reverse_by_the_refunded_share(
    client: TestClient, db: Database
) -> None:
    """The payloads the commerce domain publishes: order.paid without lines, order.returned lines by SKU."""
    spend_rule(client)
    customer = new_customer(client)
    paid = {
        "order_id": "c0ffee",
        "number": "W-1001",
        "customer_id": customer,
        "channel": "web",
        "status": "paid",
        "payment_status": "paid",
        "currency": "EUR",
        "total": 8000,
        "paid_amount": 8000,
        "refunded_amount": 0,
        "fulfillment_type": "shipping",
    }
    publish(db, "order.paid", paid)
    publish(db, "order.paid", paid)
    assert wallet(client, customer)["pending"] == 80
    returned = {
        **paid,
        "status": "partially_returned",
        "return_id": "r-1",
        "refund_amount": 2000,
        "lines": [{"sku": "TEE-M", "quantity": 1, "reason": "size", "condition": "new", "refund": 2000}],
    }
    publish(db, "order.returned", returned)
    assert wallet(client, customer)["pending"] == 60
    assert ledger_sum(db, customer) == (60, 60)
