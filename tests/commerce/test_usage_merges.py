"""Per-customer promotion limits count the uses of customers merged together; undoing the merge gives them back."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.commerce.helpers import API, cart, make_customer, make_product, make_promotion, make_store, ok, set_stock


def applied(client: TestClient, customer_id: str, promotion_id: str) -> bool:
    quote = ok(client.post(f"{API}/carts/quote", json=cart(customer_id, [("CAP-1", 1)])))
    return any(entry["promotion_id"] == promotion_id for entry in quote["promotions"])


def buy(client: TestClient, customer_id: str) -> dict[str, Any]:
    return ok(client.post(f"{API}/orders", json=cart(customer_id, [("CAP-1", 1)])), 201)


def test_a_once_per_customer_promotion_used_under_another_record_is_used_after_the_merge(client: TestClient) -> None:
    make_product(client, "Cap", [("CAP-1", 2000)])
    set_stock(client, make_store(client, "W", kind="warehouse")["id"], "CAP-1", 100)
    welcome = make_promotion(client, name="Welcome", kind="fixed", amount=300, currency="EUR",
                             usage_limit_per_customer=1)  # fmt: skip
    store = make_customer(client, "ana.garcia@work.example.com")["id"]  # Ana, known to the store for years
    web = make_customer(client, "ana@example.com")["id"]  # the same Ana, new on the web
    first = buy(client, web)
    assert [e["promotion_id"] for e in first["promotions"]] == [welcome["id"]]
    assert applied(client, store, welcome["id"])  # as far as anyone knows, another customer

    merge = ok(client.post(f"{API}/customers/{store}/merge", json={"other_customer_id": web, "force": True}), 201)
    assert merge["customer_id"] == store  # the older record survives
    assert not applied(client, store, welcome["id"])  # one person, one welcome
    again = buy(client, store)
    assert again["promotions"] == [] and again["discount"] == 0

    ok(client.post(f"{API}/merges/{merge['merge_id']}/undo"))
    assert applied(client, store, welcome["id"])  # the store record itself never used it
    assert not applied(client, web, welcome["id"])


def test_uses_add_up_when_both_customers_used_a_promotion_and_undo_restores_each(client: TestClient) -> None:
    make_product(client, "Cap", [("CAP-1", 2000)])
    set_stock(client, make_store(client, "W", kind="warehouse")["id"], "CAP-1", 100)
    twice = make_promotion(client, name="Twice", kind="percentage", percent=10, usage_limit_per_customer=2)
    first = make_customer(client, "one@example.com")["id"]
    second = make_customer(client, "two@example.com")["id"]
    buy(client, first)
    buy(client, second)
    assert applied(client, first, twice["id"]) and applied(client, second, twice["id"])  # one use left each
    merge = ok(client.post(f"{API}/customers/{first}/merge", json={"other_customer_id": second, "force": True}), 201)
    survivor = merge["customer_id"]
    assert not applied(client, survivor, twice["id"])  # 1 + 1: both uses are gone
    ok(client.post(f"{API}/merges/{merge['merge_id']}/undo"))
    assert applied(client, first, twice["id"]) and applied(client, second, twice["id"])
