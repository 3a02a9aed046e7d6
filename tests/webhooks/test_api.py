"""The subscription API: validation, secrets shown once, idempotency, roles."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.webhooks.helpers import SUBSCRIPTIONS, deliveries, problem, subscribe

URL = "https://hooks.example.com/omnicanal"


def test_create_list_get_patch(client: TestClient) -> None:
    created = subscribe(client, URL, ["message.*", "conversation.resolved", "message.*"], description=" CRM sync ")
    assert created["event_types"] == ["message.*", "conversation.resolved"]
    assert created["description"] == "CRM sync" and created["active"] is True and created["disabled_reason"] is None

    listed = client.get(SUBSCRIPTIONS)
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert item["id"] == created["id"] and "secret" not in item
    fetched = client.get(f"{SUBSCRIPTIONS}/{created['id']}").json()
    assert fetched == item

    patched = client.patch(f"{SUBSCRIPTIONS}/{created['id']}", json={"event_types": ["*"], "active": False})
    assert patched.status_code == 200, patched.text
    assert patched.json()["event_types"] == ["*"] and patched.json()["active"] is False
    assert patched.json()["disabled_reason"] == "disabled through the API"
    assert patched.json()["url"] == URL and "secret" not in patched.json()
    assert deliveries(client, created["id"]) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://hooks.example.com/x", "event_types": ["*"]}, "url"),
        ({"url": "ftp://hooks.example.com/x", "event_types": ["*"]}, "url"),
        ({"url": "not a url", "event_types": ["*"]}, "url"),
        ({"url": "https://", "event_types": ["*"]}, "url"),
        ({"url": "https://hooks.example.com:99999/x", "event_types": ["*"]}, "url"),
        ({"url": URL, "event_types": ["message.recieved"]}, "event_types"),
        ({"url": URL, "event_types": ["orders.*"]}, "event_types"),
        ({"url": URL, "event_types": ["message*"]}, "event_types"),
        ({"url": URL, "event_types": []}, "event_types"),
        ({"url": URL}, "event_types"),
        ({"event_types": ["*"]}, "url"),
        ({"url": URL, "event_types": ["*"], "secret": "whsec_mine"}, "secret"),
    ],
)
def test_invalid_subscriptions_are_refused(client: TestClient, body: dict[str, object], field: str) -> None:
    problem(client.post(SUBSCRIPTIONS, json=body), 422, field)
    assert client.get(SUBSCRIPTIONS).json()["items"] == []


def test_plain_http_is_only_for_local_endpoints_and_patches_are_validated(client: TestClient) -> None:
    for url in ("http://localhost:8080/h", "http://127.0.0.1:9/h", "http://[::1]:9/h"):
        subscribe(client, url, ["customer.*"])
    sub = subscribe(client, URL, ["customer.created"])
    problem(client.patch(f"{SUBSCRIPTIONS}/{sub['id']}", json={"url": "http://example.com"}), 422, "url")
    problem(client.patch(f"{SUBSCRIPTIONS}/{sub['id']}", json={"event_types": ["nope"]}), 422, "event_types")
    problem(client.patch(f"{SUBSCRIPTIONS}/{sub['id']}", json={"secret": "x"}), 422, "secret")
    assert client.get(f"{SUBSCRIPTIONS}/{sub['id']}").json()["event_types"] == ["customer.created"]


def test_idempotency_key_gives_the_same_subscription(client: TestClient) -> None:
    body = {"url": URL, "event_types": ["message.received"]}
    headers = {"Idempotency-Key": "create-hook-1"}
    first = client.post(SUBSCRIPTIONS, json=body, headers=headers)
    again = client.post(SUBSCRIPTIONS, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
    assert len(client.get(SUBSCRIPTIONS).json()["items"]) == 1
    problem(client.post(SUBSCRIPTIONS, json={**body, "description": "other"}, headers=headers), 409)


def test_unknown_ids_and_bad_filters(client: TestClient) -> None:
    missing = "01890000-0000-7000-8000-000000000000"
    problem(client.get(f"{SUBSCRIPTIONS}/{missing}"), 404)
    problem(client.patch(f"{SUBSCRIPTIONS}/{missing}", json={"active": True}), 404)
    problem(client.post(f"{SUBSCRIPTIONS}/{missing}/rotate-secret"), 404)
    problem(client.post(f"{SUBSCRIPTIONS}/{missing}/test"), 404)
    problem(client.get(f"{SUBSCRIPTIONS}/{missing}/deliveries"), 404)
    problem(client.get(f"/api/v1/webhook-deliveries/{missing}"), 404)
    sub = subscribe(client, URL, ["*"])
    problem(client.get(f"{SUBSCRIPTIONS}/{sub['id']}/deliveries", params={"state": "lost"}), 422, "state")
    problem(client.get(f"{SUBSCRIPTIONS}/{sub['id']}/deliveries", params={"cursor": "garbage!"}), 422, "cursor")


def test_deliveries_are_paginated(client: TestClient) -> None:
    sub = subscribe(client, URL, ["*"])
    ids = [client.post(f"{SUBSCRIPTIONS}/{sub['id']}/test").json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get(f"{SUBSCRIPTIONS}/{sub['id']}/deliveries", params=params).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


@pytest.mark.parametrize("role", ["agent", "supervisor", "analyst"])
def test_only_webhook_managers_may_use_the_api(client_as: Callable[[str], TestClient], role: str) -> None:
    other = client_as(role)
    problem(other.get(SUBSCRIPTIONS), 403)
    problem(other.post(SUBSCRIPTIONS, json={"url": URL, "event_types": ["*"]}), 403)
    problem(other.post("/api/v1/webhook-deliveries/01890000-0000-7000-8000-000000000000/replay"), 403)


def test_an_api_key_is_required(client: TestClient) -> None:
    anonymous = client.get(SUBSCRIPTIONS, headers={"Authorization": ""})
    problem(anonymous, 401)
