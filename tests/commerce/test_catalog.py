"""Catalog, stores and stock through the API: what a shop, a clerk and a customer see."""

from __future__ import annotations

from fastapi.testclient import TestClient

from omnicanal.commerce import catalog
from omnicanal.db import Database
from tests.commerce.helpers import API, make_product, make_store, ok, set_stock, shop, stock


def test_product_with_variants_and_one_price_list_per_currency(client: TestClient) -> None:
    created = make_product(client, "Jacket", [("JKT-S", 5999), ("JKT-M", 5999)])
    assert created["name"] == "Jacket"
    assert [v["sku"] for v in created["variants"]] == ["JKT-S", "JKT-M"]
    assert created["variants"][0]["price"] == {"amount": 5999, "currency": "EUR", "channel": None}
    assert created["variants"][0]["attributes"] == {"size": "M"}

    fetched = ok(client.get(f"{API}/products/{created['id']}"))
    assert fetched["variants"] == created["variants"]
    listed = ok(client.get(f"{API}/products"))
    assert [p["id"] for p in listed["items"]] == [created["id"]]
    # no USD price list for it: no price shown rather than a made-up one
    assert ok(client.get(f"{API}/products/{created['id']}", params={"currency": "USD"}))["variants"][0]["price"] is None


def test_channel_price_only_where_configured_and_shown_as_such(client: TestClient) -> None:
    product = make_product(client, "Mug", [("MUG-1", 1200)], channel_prices={"MUG-1": {"store": 1000}})
    web = ok(client.get(f"{API}/products/{product['id']}", params={"channel": "web"}))["variants"][0]
    store = ok(client.get(f"{API}/products/{product['id']}", params={"channel": "store"}))["variants"][0]
    assert web["price"] == {"amount": 1200, "currency": "EUR", "channel": None}
    assert store["price"] == {"amount": 1000, "currency": "EUR", "channel": "store"}


def test_a_sku_belongs_to_one_product(client: TestClient) -> None:
    make_product(client, "Mug", [("MUG-1", 1200)])
    response = client.post(
        f"{API}/products",
        json={"name": "Other", "variants": [{"sku": "MUG-1", "price": {"amount": 1, "currency": "EUR"}}]},
    )
    assert response.status_code == 409
    assert "MUG-1" in response.json()["detail"]


def test_stock_per_location_and_availability_per_store(client: TestClient) -> None:
    data = shop(client)
    centro = data["centro"]["id"]
    assert stock(client, centro, "TEE-M") == {"sku": "TEE-M", "on_hand": 3, "reserved": 0, "available": 3}
    assert stock(client, data["norte"]["id"], "TEE-M") == {"sku": "TEE-M", "on_hand": 0, "reserved": 0, "available": 0}
    stores = ok(client.get(f"{API}/stores", params={"sku": "RUN-42"}))
    assert {s["code"]: s["available"] for s in stores} == {"MAD1": 1, "MAD2": 2, "WH1": 10}
    warehouse = next(s for s in stores if s["code"] == "WH1")
    assert warehouse["kind"] == "warehouse" and warehouse["pickup"] is False
    assert data["centro"]["opening_hours"] == {"mon": [["10:00", "21:00"]]}
    assert data["centro"]["timezone"] == "Europe/Madrid"


def test_bad_stock_requests(client: TestClient) -> None:
    store = make_store(client, "S1")
    assert client.get(f"{API}/stores/{store['id']}/stock", params={"sku": "NOPE"}).status_code == 404
    make_product(client, "Mug", [("MUG-1", 1200)])
    response = client.put(f"{API}/stores/{store['id']}/stock/MUG-1", json={"quantity": -1})
    assert response.status_code == 422
    set_stock(client, store["id"], "MUG-1", 5)
    assert stock(client, store["id"], "MUG-1")["on_hand"] == 5


def test_an_analyst_reads_the_catalog_but_cannot_change_it(client_as: object) -> None:
    analyst = client_as("analyst")  # type: ignore[operator]
    assert analyst.get(f"{API}/products").status_code == 200
    response = analyst.post(f"{API}/stores", json={"code": "X", "name": "X"})
    assert response.status_code == 403


def test_a_change_counter_read_once_per_transaction_is_forgotten_when_that_transaction_changes_it(
    client: TestClient, db: Database
) -> None:
    make_product(client, "Mug", [("MUG-1", 1200)])  # the schema is there and the catalog has a counter
    with db.write() as session:
        before = catalog.versions(session)
        catalog.bump_version(session, "promotions")
        catalog.bump_version(session, "catalog")
        after = catalog.versions(session)
        assert after["promotions"] == before.get("promotions", 0) + 1
        assert after["catalog"] == before["catalog"] + 1
        after["catalog"] = -1  # a caller's copy: changing it changes nothing the next read sees
        assert catalog.versions(session)["catalog"] == before["catalog"] + 1
    with db.write() as session:  # another transaction reads the counters again
        catalog.bump_version(session, "catalog")
    with db.read() as session:
        assert catalog.versions(session)["catalog"] == before["catalog"] + 2
