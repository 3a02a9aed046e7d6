"""Returns on any channel under one policy; notifications on the customer's channel and language; events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicanal import dispatch
from omnicanal.conversations.models import Message
from omnicanal.db import Database
from omnicanal.outbox.models import OutboxItem
from tests.commerce.helpers import API, cart, make_customer, ok, shop, stock
from tests.commerce.test_payments_fulfillment import _pickup_code, pay, place


def delivered(client: TestClient, data: dict[str, Any], lines: list[tuple[str, int]], **kw: Any) -> dict[str, Any]:
    order = place(client, data, lines, **kw)
    pay(client, order, order["total"])
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    return order


def test_online_order_returned_in_a_store_restocks_there_and_refunds_the_card(client: TestClient) -> None:
    data = shop(client)
    centro, warehouse = data["centro"]["id"], data["warehouse"]["id"]
    order = delivered(client, data, [("TEE-M", 2), ("BOOK-1", 1)])
    tee_line = next(line for line in order["lines"] if line["sku"] == "TEE-M")
    body = {
        "order_id": order["id"],
        "channel": "store",
        "store_id": centro,
        "lines": [{"sku": "TEE-M", "quantity": 1, "reason": "too small", "condition": "new"}],
    }
    returned = ok(client.post(f"{API}/returns", json=body), 201)
    assert returned["refund_amount"] == tee_line["total"] // 2
    assert returned["order_status"] == "partially_returned"
    assert stock(client, centro, "TEE-M")["on_hand"] == 4  # received in the store, back on its shelf
    assert stock(client, warehouse, "TEE-M")["on_hand"] == 48
    after = ok(client.get(f"{API}/orders/{order['id']}"))
    assert after["refunded_amount"] == returned["refund_amount"]
    assert after["payments"][-1]["kind"] == "refund" and after["payments"][-1]["method"] == "card"


def test_store_purchase_returned_by_mail_as_store_credit(client: TestClient) -> None:
    data = shop(client)
    centro = data["centro"]["id"]
    order = place(client, data, [("RUN-42", 1)], channel="store", fulfillment={"type": "pickup", "store_id": centro})
    pay(client, order, order["total"], "cash")
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    ok(client.post(f"{API}/orders/{order['id']}/pickup", json={"code": _pickup_code(client, order["id"])}))
    body = {
        "order_id": order["id"],
        "channel": "mail",
        "refund_method": "store_credit",
        "lines": [{"sku": "RUN-42", "quantity": 1, "reason": "changed my mind"}],
    }
    returned = ok(client.post(f"{API}/returns", json=body), 201)
    assert (
        returned["refund_method"] == "store_credit" and returned["refund_amount"] == order["total"] - order["shipping"]
    )
    assert returned["order_status"] == "returned"
    assert ok(client.get(f"{API}/orders/{order['id']}"))["refunded_amount"] == 0  # credit, not money back
    assert stock(client, data["warehouse"]["id"], "RUN-42")["on_hand"] == 11  # mail returns go to the warehouse


def test_returns_the_policy_refuses(client: TestClient, db: Database) -> None:
    data = shop(client)
    order = delivered(client, data, [("TEE-M", 1)])
    cases = [
        ([{"sku": "TEE-M", "quantity": 2}], "lines[0].quantity", "only 1 of TEE-M can still be returned"),
        ([{"sku": "BOOK-1", "quantity": 1}], "lines[0].sku", "was not bought in this order"),
        ([{"sku": "TEE-M", "quantity": 0}], "lines[0].quantity", "at least 1"),
    ]
    for lines, field, words in cases:
        response = client.post(f"{API}/returns", json={"order_id": order["id"], "channel": "web", "lines": lines})
        assert response.status_code == 422, response.text
        assert any(e["field"] == field and words in e["message"] for e in response.json()["errors"])
    not_shipped = place(client, data, [("TEE-M", 1)])
    response = client.post(
        f"{API}/returns",
        json={"order_id": not_shipped["id"], "channel": "web", "lines": [{"sku": "TEE-M", "quantity": 1}]},
    )
    assert response.status_code == 422 and "nothing handed over" in response.text
    # beyond the window: move the shipment 31 days back
    from omnicanal.commerce.models import Fulfillment

    with db.write() as session:
        for row in session.scalars(select(Fulfillment)):
            row.created_at = row.created_at - timedelta(days=31)
    late = client.post(
        f"{API}/returns",
        json={
            "order_id": order["id"],
            "channel": "store",
            "store_id": data["centro"]["id"],
            "lines": [{"sku": "TEE-M", "quantity": 1}],
        },
    )
    assert late.status_code == 422 and "return window of 30 days" in late.text
    assert ok(client.get(f"{API}/orders/{order['id']}"))["status"] == "fulfilled"


@pytest.fixture
def published() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    handlers = []
    for name in ("order.placed", "order.paid", "order.fulfilled", "order.collected", "order.returned"):

        def handler(session: Any, payload: dict[str, Any], name: str = name) -> None:
            seen.append((name, payload))

        dispatch.subscribe(name, handler)
        handlers.append((name, handler))
    yield seen
    for name, handler in handlers:
        dispatch._handlers[name].remove(handler)


def test_domain_events_for_other_domains(client: TestClient, published: list[tuple[str, dict[str, Any]]]) -> None:
    data = shop(client)
    order = delivered(client, data, [("TEE-M", 1)])
    ok(
        client.post(
            f"{API}/returns",
            json={"order_id": order["id"], "channel": "web", "lines": [{"sku": "TEE-M", "quantity": 1}]},
        ),
        201,
    )
    assert [name for name, _ in published] == ["order.placed", "order.paid", "order.fulfilled", "order.returned"]
    paid = dict(published)["order.paid"]
    assert paid["order_id"] == order["id"] and paid["customer_id"] == order["customer_id"]
    assert paid["total"] == order["total"] and paid["currency"] == "EUR"
    timeline = ok(client.get(f"{API}/customers/{order['customer_id']}/timeline"))
    types = [e["type"] for e in timeline["items"]]
    for event in ("order.placed", "order.paid", "order.fulfilled", "order.returned"):
        assert event in types


def test_notifications_on_the_consented_channel_in_the_customer_language(client: TestClient, db: Database) -> None:
    data = shop(client)
    customer = ok(
        client.post(
            f"{API}/customers",
            json={
                "identities": [
                    {"type": "email", "value": "luis@example.com"},
                    {"type": "phone", "value": "+34600123123"},
                ],
                "traits": {"language": "es", "attributes": {"preferred_channel": "whatsapp"}},
            },
        ),
        201,
    )
    for channel, status in (("sms", "granted"), ("whatsapp", "denied"), ("email", "withdrawn")):
        ok(
            client.put(
                f"{API}/customers/{customer['id']}/consents/{channel}/transactional",
                json={"status": status, "source": "web"},
            )
        )
    body = cart(customer["id"], [("TEE-M", 1)], fulfillment={"type": "pickup", "store_id": data["centro"]["id"]})
    order = ok(client.post(f"{API}/orders", json=body), 201)
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    with db.read() as session:
        messages = list(
            session.scalars(
                select(Message)
                .where(Message.customer_id == uuid.UUID(order["customer_id"]))
                .order_by(Message.created_at)
            )
        )
        items = list(
            session.scalars(select(OutboxItem).where(OutboxItem.customer_id == uuid.UUID(order["customer_id"])))
        )
    assert [m.channel for m in messages] == ["sms", "sms"]
    assert messages[0].text.startswith("¡Gracias! Hemos recibido tu pedido")
    assert "listo para recoger en Madrid Centro" in messages[1].text
    assert _pickup_code(client, order["id"]) in messages[1].text
    assert {item.channel for item in items} == {"sms"} and items[0].payload["to"] == "+34600123123"
    conversations = ok(client.get(f"{API}/conversations", params={"customer_id": customer["id"]}))
    assert len(conversations["items"]) == 1
    timeline = ok(client.get(f"{API}/customers/{customer['id']}/timeline", params={"type": "notification.sent"}))
    assert len(timeline["items"]) == 2


def test_no_transactional_consent_no_notification(client: TestClient, db: Database) -> None:
    data = shop(client)
    silent = make_customer(client, "quiet@example.com")
    ok(client.post(f"{API}/orders", json=cart(silent["id"], [("TEE-M", 1)])), 201)
    with db.read() as session:
        assert list(session.scalars(select(Message).where(Message.customer_id == uuid.UUID(silent["id"])))) == []
    assert data


def test_carts_on_the_timeline_and_for_the_agent_and_privacy(client: TestClient) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    ok(client.post(f"{API}/carts/quote", json=cart(customer, [("TEE-M", 2)], channel="app")))
    carts = ok(client.get(f"{API}/customers/{customer}/carts"))
    assert [(c["channel"], c["lines"]) for c in carts] == [("app", [{"sku": "TEE-M", "quantity": 2}])]
    timeline = ok(client.get(f"{API}/customers/{customer}/timeline", params={"type": "cart.updated"}))
    assert len(timeline["items"]) == 1
    order = ok(client.post(f"{API}/orders", json=cart(customer, [("TEE-M", 2)], channel="app")), 201)
    assert ok(client.get(f"{API}/customers/{customer}/carts")) == []  # ordered: no longer open
    link = ok(client.post(f"{API}/orders/{order['id']}/payments", json={"method": "payment_link", "amount": 100}), 201)
    qr = client.get(f"{API}/payments/{link['id']}/qr.svg")
    assert qr.status_code == 200 and b"<svg" in qr.content
    exported = ok(client.get(f"{API}/customers/{customer}/export"))
    assert exported["commerce"]["orders"][0]["address"] == {"line1": "Gran Via 1", "city": "Madrid"}
    assert client.delete(f"{API}/customers/{customer}").status_code in (200, 204)
    assert ok(client.get(f"{API}/orders/{order['id']}"))["fulfillment"]["address"] is None
