"""Payments, shipments, click & collect and the order state machine, through the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from omnicanal.commerce.orders import expire_due
from omnicanal.db import Database, utcnow
from tests.commerce.helpers import API, cart, ok, shop, stock


def place(client: TestClient, data: dict[str, Any], lines: list[tuple[str, int]], **kw: Any) -> dict[str, Any]:
    return ok(client.post(f"{API}/orders", json=cart(data["customer"]["id"], lines, **kw)), 201)


def pay(client: TestClient, order: dict[str, Any], amount: int, method: str = "card") -> dict[str, Any]:
    return ok(client.post(f"{API}/orders/{order['id']}/payments", json={"method": method, "amount": amount}), 201)


def test_partial_payments_then_paid_then_refund(client: TestClient) -> None:
    data = shop(client)
    order = place(client, data, [("TEE-M", 1)])
    total = order["total"]
    first = pay(client, order, 1000, "cash")
    assert (first["payment_status"], first["order_status"], first["balance_due"]) == (
        "partially_paid",
        "pending",
        total - 1000,
    )
    too_much = client.post(f"{API}/orders/{order['id']}/payments", json={"method": "card", "amount": total})
    assert too_much.status_code == 422 and "balance due" in too_much.text
    second = pay(client, order, total - 1000, "wallet")
    assert (second["payment_status"], second["order_status"], second["balance_due"]) == ("paid", "paid", 0)
    refund = ok(client.post(f"{API}/orders/{order['id']}/payments", json={"kind": "refund", "amount": 500}), 201)
    assert refund["kind"] == "refund" and refund["method"] == "wallet"  # back to the latest payment first
    assert refund["payment_status"] == "partially_refunded"
    over = client.post(f"{API}/orders/{order['id']}/payments", json={"kind": "refund", "amount": total})
    assert over.status_code == 422
    fetched = ok(client.get(f"{API}/orders/{order['id']}"))
    assert [(p["kind"], p["method"], p["amount"]) for p in fetched["payments"]] == [
        ("payment", "cash", 1000),
        ("payment", "wallet", total - 1000),
        ("refund", "wallet", 500),
    ]
    assert fetched["refunded_amount"] == 500


def test_the_answer_to_a_payment_is_the_payment_as_the_order_lists_it(client: TestClient) -> None:
    data = shop(client)
    order = place(client, data, [("TEE-M", 1)])
    answers = [pay(client, order, 1000, "cash"), pay(client, order, order["total"] - 1000, "card")]
    answers.append(ok(client.post(f"{API}/orders/{order['id']}/payments", json={"kind": "refund", "amount": 500}), 201))
    other = place(client, data, [("TEE-M", 1)])
    linked = pay(client, other, other["total"], "payment_link")
    listed = {p["id"]: p for o in (order, other) for p in ok(client.get(f"{API}/orders/{o['id']}"))["payments"]}
    for answer in [*answers, linked]:
        assert {k: v for k, v in answer.items() if k not in ("order_status", "payment_status", "balance_due")} == (
            listed[answer["id"]]
        )
    assert answers[2]["refund_of"] == answers[1]["id"] and linked["link_url"]


def test_payment_link_counts_once_confirmed(client: TestClient) -> None:
    data = shop(client)
    order = place(client, data, [("TEE-M", 1)])
    link = pay(client, order, order["total"], "payment_link")
    assert link["status"] == "pending" and link["link_url"].startswith("http")
    assert ok(client.get(f"{API}/orders/{order['id']}"))["status"] == "pending"
    captured = ok(client.post(f"{API}/payments/{link['id']}/capture"))
    assert captured["status"] == "captured"
    assert ok(client.get(f"{API}/orders/{order['id']}"))["status"] == "paid"
    assert client.post(f"{API}/payments/{link['id']}/capture").status_code == 409


def test_delivery_in_two_shipments(client: TestClient) -> None:
    data = shop(client)
    warehouse = data["warehouse"]["id"]
    order = place(client, data, [("TEE-M", 2), ("BOOK-1", 1)])
    refused = client.post(f"{API}/orders/{order['id']}/fulfillments", json={})
    assert refused.status_code == 409 and "pending" in refused.json()["detail"]
    assert refused.json()["type"].endswith("illegal-transition")
    pay(client, order, order["total"])
    first = ok(
        client.post(
            f"{API}/orders/{order['id']}/fulfillments",
            json={"lines": [{"sku": "TEE-M", "quantity": 1}], "carrier": "Correos", "tracking_number": "PK123"},
        ),
        201,
    )
    assert first["status"] == "shipped" and first["tracking_number"] == "PK123"
    assert ok(client.get(f"{API}/orders/{order['id']}"))["status"] == "partially_fulfilled"
    assert stock(client, warehouse, "TEE-M") == {"sku": "TEE-M", "on_hand": 49, "reserved": 1, "available": 48}
    too_many = client.post(
        f"{API}/orders/{order['id']}/fulfillments", json={"lines": [{"sku": "TEE-M", "quantity": 2}]}
    )
    assert too_many.status_code == 422 and "only 1 of TEE-M left to ship" in too_many.text
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={"carrier": "SEUR", "tracking_number": "S9"}), 201)
    done = ok(client.get(f"{API}/orders/{order['id']}"))
    assert done["status"] == "fulfilled" and len(done["fulfillments"]) == 2
    assert stock(client, warehouse, "TEE-M") == {"sku": "TEE-M", "on_hand": 48, "reserved": 0, "available": 48}
    again = client.post(f"{API}/orders/{order['id']}/fulfillments", json={})
    assert again.status_code == 409
    cancel = client.post(f"{API}/orders/{order['id']}/cancel")
    assert cancel.status_code == 409 and "fulfilled" in cancel.json()["detail"]


def test_ship_from_store_takes_the_store_stock(client: TestClient) -> None:
    data = shop(client)
    norte = data["norte"]["id"]
    order = place(
        client,
        data,
        [("RUN-42", 1)],
        fulfillment={"type": "ship_from_store", "store_id": norte, "address": {"line1": "Sol 2"}},
    )
    pay(client, order, order["total"])
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={"carrier": "GLS"}), 201)
    assert stock(client, norte, "RUN-42")["on_hand"] == 1


def test_click_and_collect_with_code_and_qr(client: TestClient) -> None:
    data = shop(client)
    centro = data["centro"]["id"]
    order = place(client, data, [("TEE-M", 2)], channel="app", fulfillment={"type": "pickup", "store_id": centro})
    assert order["shipping"] == 0 and order["fulfillment"]["store_id"] == centro
    assert stock(client, centro, "TEE-M") == {"sku": "TEE-M", "on_hand": 3, "reserved": 2, "available": 1}
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    ready = ok(client.get(f"{API}/orders/{order['id']}"))
    assert ready["status"] == "ready_for_pickup" and ready["pickup"]["ready"] is True
    qr = client.get(f"{API}/orders/{order['id']}/pickup/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"] == "image/svg+xml" and b"<svg" in qr.content
    code = _pickup_code(client, order["id"])
    # unpaid: the counter must take the payment first
    unpaid = client.post(f"{API}/orders/{order['id']}/pickup", json={"code": code})
    assert unpaid.status_code == 409 and "still due" in unpaid.text
    pay(client, order, order["total"], "card")
    wrong = client.post(f"{API}/orders/{order['id']}/pickup", json={"code": "WRONG123"})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "code"
    assert ok(client.get(f"{API}/orders/{order['id']}"))["status"] == "ready_for_pickup"
    collected = ok(client.post(f"{API}/orders/{order['id']}/pickup", json={"code": code.lower()}))
    assert collected["status"] == "collected"
    assert stock(client, centro, "TEE-M") == {"sku": "TEE-M", "on_hand": 1, "reserved": 0, "available": 1}
    twice = client.post(f"{API}/orders/{order['id']}/pickup", json={"code": code})
    assert twice.status_code == 409


def _pickup_code(client: TestClient, order_id: str) -> str:
    order = ok(client.get(f"{API}/orders/{order_id}"))
    timeline = ok(
        client.get(f"{API}/customers/{order['customer_id']}/timeline", params={"type": "order.ready_for_pickup"})
    )
    return str(timeline["items"][0]["properties"]["pickup_code"])


def test_pickup_with_transfer_from_the_warehouse(client: TestClient) -> None:
    data = shop(client)
    norte, warehouse = data["norte"]["id"], data["warehouse"]["id"]
    body = cart(data["customer"]["id"], [("TEE-L", 2)], fulfillment={"type": "pickup", "store_id": norte})
    refused = client.post(f"{API}/orders", json=body)
    assert refused.status_code == 422 and "available at Madrid Norte" in refused.text
    body["fulfillment"]["allow_transfer"] = True
    order = ok(client.post(f"{API}/orders", json=body), 201)
    assert stock(client, warehouse, "TEE-L")["reserved"] == 2
    pay(client, order, order["total"])
    ok(client.post(f"{API}/orders/{order['id']}/fulfillments", json={}), 201)
    assert stock(client, warehouse, "TEE-L") == {"sku": "TEE-L", "on_hand": 48, "reserved": 0, "available": 48}
    assert stock(client, norte, "TEE-L") == {"sku": "TEE-L", "on_hand": 2, "reserved": 2, "available": 0}
    ok(client.post(f"{API}/orders/{order['id']}/pickup", json={"code": _pickup_code(client, order["id"])}))
    assert stock(client, norte, "TEE-L")["on_hand"] == 0


def test_unpaid_orders_and_uncollected_pickups_expire_and_release_stock(client: TestClient, db: Database) -> None:
    data = shop(client)
    centro, warehouse = data["centro"]["id"], data["warehouse"]["id"]
    unpaid = place(client, data, [("RUN-42", 1)])
    pickup = place(client, data, [("TEE-M", 1)], fulfillment={"type": "pickup", "store_id": centro})
    pay(client, pickup, pickup["total"])
    ok(client.post(f"{API}/orders/{pickup['id']}/fulfillments", json={}), 201)
    with db.write() as session:
        assert expire_due(session) == 0
    with db.write() as session:
        assert expire_due(session, now=utcnow() + timedelta(days=8)) == 2
    assert ok(client.get(f"{API}/orders/{unpaid['id']}"))["status"] == "expired"
    expired_pickup = ok(client.get(f"{API}/orders/{pickup['id']}"))
    assert expired_pickup["status"] == "expired" and expired_pickup["payment_status"] == "refunded"
    assert stock(client, warehouse, "RUN-42")["reserved"] == 0
    assert stock(client, centro, "TEE-M") == {"sku": "TEE-M", "on_hand": 3, "reserved": 0, "available": 3}


def test_cancel_releases_stock_and_gives_back_the_promotion_use(client: TestClient) -> None:
    from tests.commerce.helpers import make_promotion

    data = shop(client)
    promotion = make_promotion(client, name="Once", kind="percentage", percent=5, usage_limit=1)
    order = place(client, data, [("RUN-42", 1)])
    assert ok(client.get(f"{API}/promotions/{promotion['id']}"))["used_count"] == 1
    pay(client, order, 1000)
    cancelled = ok(client.post(f"{API}/orders/{order['id']}/cancel"))
    assert cancelled["status"] == "cancelled" and cancelled["refunded_amount"] == 1000
    assert stock(client, data["warehouse"]["id"], "RUN-42")["reserved"] == 0
    assert ok(client.get(f"{API}/promotions/{promotion['id']}"))["used_count"] == 0
    assert client.post(f"{API}/orders/{order['id']}/payments", json={"method": "card", "amount": 1}).status_code == 409
