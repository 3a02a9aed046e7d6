"""Building a small shop through the public API."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

API = "/api/v1"


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def make_category(client: TestClient, slug: str, name: str, parent: str | None = None) -> dict[str, Any]:
    return ok(client.post(f"{API}/categories", json={"slug": slug, "name": name, "parent": parent}), 201)


def make_product(
    client: TestClient,
    name: str,
    variants: list[tuple[str, int]],
    *,
    category: str | None = None,
    tax_class: str = "standard",
    channel_prices: dict[str, dict[str, int]] | None = None,
    currency: str = "EUR",
) -> dict[str, Any]:
    body = {
        "name": name,
        "category": category,
        "tax_class": tax_class,
        "names": {"en": name, "es": name},
        "variants": [
            {
                "sku": sku,
                "price": {"amount": amount, "currency": currency},
                "prices": [
                    {"amount": value, "currency": currency, "channel": channel}
                    for channel, value in (channel_prices or {}).get(sku, {}).items()
                ],
                "attributes": {"size": "M"},
            }
            for sku, amount in variants
        ],
    }
    return ok(client.post(f"{API}/products", json=body), 201)


def make_store(client: TestClient, code: str, *, kind: str = "store", name: str | None = None) -> dict[str, Any]:
    body = {
        "code": code,
        "name": name or f"Store {code}",
        "kind": kind,
        "address": {"line1": "Calle Mayor 1", "city": "Madrid", "country": "ES"},
        "opening_hours": {"mon": [["10:00", "21:00"]]},
        "timezone": "Europe/Madrid",
    }
    return ok(client.post(f"{API}/stores", json=body), 201)


def set_stock(client: TestClient, store_id: str, sku: str, quantity: int) -> dict[str, Any]:
    return ok(client.put(f"{API}/stores/{store_id}/stock/{sku}", json={"quantity": quantity}))


def stock(client: TestClient, store_id: str, sku: str) -> dict[str, Any]:
    return ok(client.get(f"{API}/stores/{store_id}/stock", params={"sku": sku}))


def make_customer(client: TestClient, email: str, **traits: Any) -> dict[str, Any]:
    body = {"identities": [{"type": "email", "value": email}], "traits": traits}
    return ok(client.post(f"{API}/customers", json=body), 201)


def cart(
    customer_id: str | None,
    lines: list[tuple[str, int]],
    *,
    channel: str = "web",
    fulfillment: dict[str, Any] | None = None,
    coupons: list[str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": channel,
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "fulfillment": fulfillment or {"type": "delivery", "address": {"line1": "Gran Via 1", "city": "Madrid"}},
    }
    if customer_id is not None:
        body["customer_id"] = customer_id
    if coupons:
        body["coupon_codes"] = coupons
    return body


def make_promotion(client: TestClient, **fields: Any) -> dict[str, Any]:
    return ok(client.post(f"{API}/promotions", json=fields), 201)


def shop(client: TestClient) -> dict[str, Any]:
    """A category tree, three products, a warehouse and two stores with stock."""
    make_category(client, "clothing", "Clothing")
    make_category(client, "shoes", "Shoes", parent="clothing")
    tee = make_product(client, "T-shirt", [("TEE-M", 2000), ("TEE-L", 2000)], category="clothing")
    shoe = make_product(client, "Runner", [("RUN-42", 8000)], category="shoes")
    book = make_product(client, "Cookbook", [("BOOK-1", 1500)], tax_class="super_reduced")
    warehouse = make_store(client, "WH1", kind="warehouse", name="Central warehouse")
    centro = make_store(client, "MAD1", name="Madrid Centro")
    norte = make_store(client, "MAD2", name="Madrid Norte")
    for sku, quantity in (("TEE-M", 50), ("TEE-L", 50), ("RUN-42", 10), ("BOOK-1", 20)):
        set_stock(client, warehouse["id"], sku, quantity)
    set_stock(client, centro["id"], "TEE-M", 3)
    set_stock(client, centro["id"], "RUN-42", 1)
    set_stock(client, norte["id"], "RUN-42", 2)
    customer = make_customer(client, "ana@example.com", language="en")
    return {
        "tee": tee,
        "shoe": shoe,
        "book": book,
        "warehouse": warehouse,
        "centro": centro,
        "norte": norte,
        "customer": customer,
    }
