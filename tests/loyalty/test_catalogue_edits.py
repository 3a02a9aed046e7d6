"""Editing and deleting earning rules, rewards and tiers through the API: deleted when nothing refers to them,
archived when the ledger does (kept for the history, out of the lists and of earning), clear 4xx otherwise."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from fastapi.testclient import TestClient

from omnicanal.db import Database
from tests.loyalty.helpers import event_rule, ledger_sum, new_customer, wallet
from tests.loyalty.test_redemptions import give, redeem, reward


def _post_event(client: TestClient, customer: str, event_type: str) -> int:
    body = {"id": uuid.uuid4().hex, "customer_id": customer, "type": event_type}
    response = client.post("/api/v1/loyalty/events", json=body)
    assert response.status_code == 200, response.text
    return int(response.json()["points"])


def test_a_rule_is_edited_then_deleted_or_archived_when_points_were_earned_under_it(
    client: TestClient, db: Database
) -> None:
    customer = new_customer(client)
    survey = event_rule(client, "survey.answered", 10)
    assert _post_event(client, customer, "survey.answered") == 10

    body = {**{k: survey[k] for k in ("name", "kind", "event_type")}, "points": 25}
    edited = client.put(f"/api/v1/loyalty/rules/{survey['id']}", json=body)
    assert edited.status_code == 200 and edited.json()["points"] == 25
    assert _post_event(client, customer, "survey.answered") == 25
    contradictory = client.put(f"/api/v1/loyalty/rules/{survey['id']}", json={**body, "per_amount": 100})
    assert contradictory.status_code == 422 and contradictory.json()["errors"][0]["field"] == "per_amount"

    assert client.delete(f"/api/v1/loyalty/rules/{survey['id']}").status_code == 204
    assert survey["id"] not in [r["id"] for r in client.get("/api/v1/loyalty/rules").json()]
    kept = client.get(f"/api/v1/loyalty/rules/{survey['id']}").json()
    assert kept["archived_at"] is not None and kept["active"] is False
    assert _post_event(client, customer, "survey.answered") == 0  # an archived rule earns no more
    refused = client.put(f"/api/v1/loyalty/rules/{survey['id']}", json=body)
    assert refused.status_code == 409 and refused.json()["type"].endswith("/archived")
    assert wallet(client, customer)["balance"] == 35
    assert ledger_sum(db, customer) == (35, 35)

    unused = event_rule(client, "visit", 1)
    assert client.delete(f"/api/v1/loyalty/rules/{unused['id']}").status_code == 204
    assert client.get(f"/api/v1/loyalty/rules/{unused['id']}").status_code == 404
    assert client.delete(f"/api/v1/loyalty/rules/{unused['id']}").status_code == 404
    assert client.put(f"/api/v1/loyalty/rules/{uuid.uuid4()}", json=body).status_code == 404


def test_a_reward_is_edited_then_archived_once_redeemed_and_can_no_longer_be_redeemed(
    client: TestClient, db: Database
) -> None:
    customer = new_customer(client)
    give(client, customer, 500)
    sample = reward(client, name="Sample", kind="product", cost_points=100, value={}, stock=5)
    body = {"name": "Sample XL", "kind": "product", "cost_points": 150, "stock": 2}
    edited = client.put(f"/api/v1/rewards/{sample['id']}", json=body)
    assert edited.status_code == 200 and edited.json()["cost_points"] == 150 and edited.json()["stock"] == 2
    bad = client.put(f"/api/v1/rewards/{sample['id']}", json={**body, "kind": "external"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "supplier_ref"
    assert redeem(client, customer, sample["id"], "r-1").status_code == 201
    assert wallet(client, customer)["balance"] == 350

    assert client.delete(f"/api/v1/rewards/{sample['id']}").status_code == 204
    assert sample["id"] not in [r["id"] for r in client.get("/api/v1/rewards").json()]
    assert client.get(f"/api/v1/rewards/{sample['id']}").json()["archived_at"] is not None
    again = redeem(client, customer, sample["id"], "r-2")
    assert again.status_code == 409 and again.json()["type"].endswith("/reward-not-available")
    assert redeem(client, customer, sample["id"], "r-1").status_code == 200  # the first answer still stands
    assert wallet(client, customer)["balance"] == 350 and ledger_sum(db, customer) == (350, 350)

    never_redeemed = reward(client, name="Tote bag", kind="product", cost_points=50, value={})
    assert client.delete(f"/api/v1/rewards/{never_redeemed['id']}").status_code == 204
    assert client.get(f"/api/v1/rewards/{never_redeemed['id']}").status_code == 404


def test_a_tier_is_renamed_everywhere_and_deleted_only_when_nobody_holds_or_names_it(client: TestClient) -> None:
    silver = client.post("/api/v1/loyalty/tiers", json={"name": "Silver", "threshold": 100}).json()
    gold = client.post("/api/v1/loyalty/tiers", json={"name": "Gold", "threshold": 1000}).json()
    perk = reward(client, name="Lounge", kind="product", cost_points=10, value={}, tiers=["Gold"])

    clash = client.put(f"/api/v1/loyalty/tiers/{gold['id']}", json={"name": "Silver", "threshold": 1000})
    assert clash.status_code == 409
    same_threshold = client.put(f"/api/v1/loyalty/tiers/{gold['id']}", json={"name": "Gold", "threshold": 100})
    assert same_threshold.status_code == 422 and same_threshold.json()["errors"][0]["field"] == "threshold"
    renamed = client.put(
        f"/api/v1/loyalty/tiers/{gold['id']}", json={"name": "Platinum", "threshold": 900, "multiplier": 2}
    )
    assert renamed.status_code == 200 and renamed.json()["multiplier"] == 2
    assert client.get(f"/api/v1/rewards/{perk['id']}").json()["tiers"] == ["Platinum"]

    named = client.delete(f"/api/v1/loyalty/tiers/{gold['id']}")
    assert named.status_code == 409 and "Lounge" in named.json()["detail"]
    customer = new_customer(client)
    give(client, customer, 150)  # a manual adjustment is not earning: no tier
    event_rule(client, "survey.answered", 120)
    _post_event(client, customer, "survey.answered")
    assert wallet(client, customer)["tier"] == "Silver"
    held = client.delete(f"/api/v1/loyalty/tiers/{silver['id']}")
    assert held.status_code == 409 and held.json()["type"].endswith("/tier-in-use") and held.json()["holders"] == 1

    client.put(f"/api/v1/rewards/{perk['id']}", json={"name": "Lounge", "kind": "product", "cost_points": 10})
    assert client.delete(f"/api/v1/loyalty/tiers/{gold['id']}").status_code == 204
    assert [t["name"] for t in client.get("/api/v1/loyalty/tiers").json()] == ["Silver"]
    assert client.get(f"/api/v1/loyalty/tiers/{gold['id']}").status_code == 404


def test_only_managers_edit_the_catalogue(client: TestClient, client_as: Callable[[str], TestClient]) -> None:
    survey = event_rule(client, "survey.answered", 10)
    clerk = client_as("store_clerk")
    body = {"name": "x", "kind": "event", "event_type": "survey.answered", "points": 1}
    assert clerk.put(f"/api/v1/loyalty/rules/{survey['id']}", json=body).status_code == 403
    assert clerk.delete(f"/api/v1/loyalty/rules/{survey['id']}").status_code == 403
    assert client.get(f"/api/v1/loyalty/rules/{survey['id']}").json()["points"] == 10
