"""Consent per channel and purpose, its history on the timeline, and "may we contact them"."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from omnicanal.consent.service import may_contact
from omnicanal.db import Database

API = "/api/v1"


def new_customer(client: TestClient, email: str = "ana@example.com") -> str:
    response = client.post(f"{API}/customers", json={"identities": [{"type": "email", "value": email}]})
    assert response.status_code == 201, response.text
    customer_id: str = response.json()["id"]
    return customer_id


def put(client: TestClient, customer_id: str, channel: str, purpose: str, **body: Any) -> Any:
    body.setdefault("source", "web")
    return client.put(f"{API}/customers/{customer_id}/consents/{channel}/{purpose}", json=body)


def contactable(client: TestClient, customer_id: str, channel: str, purpose: str) -> bool:
    response = client.get(f"{API}/customers/{customer_id}/contactable/{channel}/{purpose}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["customer_id"], body["channel"], body["purpose"]) == (customer_id, channel, purpose)
    allowed: bool = body["allowed"]
    return allowed


def service_says(db: Database, customer_id: str, channel: str, purpose: str) -> bool:
    with db.read() as session:
        return may_contact(session, customer_id=uuid.UUID(customer_id), channel=channel, purpose=purpose)


def field_error(response: Any, status: int = 422) -> list[str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"].endswith("/validation-error")
    return [e["field"] for e in body["errors"]]


def test_put_and_get_consents(client: TestClient) -> None:
    customer_id = new_customer(client)
    assert client.get(f"{API}/customers/{customer_id}/consents").json() == {"items": []}

    granted = put(client, customer_id, "email", "marketing", status="granted", proof="web sign-up form v3, box 2")
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert (body["channel"], body["purpose"], body["status"], body["source"]) == (
        "email",
        "marketing",
        "granted",
        "web",
    )
    assert body["proof"] == "web sign-up form v3, box 2"
    assert body["changed_by"]
    assert put(client, customer_id, "sms", "transactional", status="denied", source="pos").status_code == 200
    assert put(client, customer_id, "email", "marketing", status="withdrawn", source="email").status_code == 200

    items = client.get(f"{API}/customers/{customer_id}/consents").json()["items"]
    # one current answer per channel and purpose: the latest
    assert sorted((i["channel"], i["purpose"], i["status"], i["source"]) for i in items) == [
        ("email", "marketing", "withdrawn", "email"),
        ("sms", "transactional", "denied", "pos"),
    ]


def test_every_change_is_a_timeline_event(client: TestClient) -> None:
    customer_id = new_customer(client)
    for status, source in (("granted", "web"), ("withdrawn", "sms"), ("granted", "store"), ("denied", "app")):
        assert put(client, customer_id, "whatsapp", "surveys", status=status, source=source).status_code == 200
    assert put(client, customer_id, "postal", "marketing", status="granted").status_code == 200

    items = client.get(f"{API}/customers/{customer_id}/timeline", params={"limit": 50}).json()["items"]
    consent_events = [e for e in reversed(items) if e["type"].startswith("consent.")]  # oldest first
    assert [(e["type"], e["channel"]) for e in consent_events] == [
        ("consent.granted", "web"),
        ("consent.withdrawn", "sms"),
        ("consent.granted", "store"),
        ("consent.denied", "app"),
        ("consent.granted", "web"),
    ]
    assert [e["properties"] for e in consent_events] == [
        {"channel": "whatsapp", "purpose": "surveys", "previous_status": None},
        {"channel": "whatsapp", "purpose": "surveys", "previous_status": "granted"},
        {"channel": "whatsapp", "purpose": "surveys", "previous_status": "withdrawn"},
        {"channel": "whatsapp", "purpose": "surveys", "previous_status": "granted"},
        {"channel": "postal", "purpose": "marketing", "previous_status": None},
    ]
    by_type = client.get(f"{API}/customers/{customer_id}/timeline", params={"type": "consent.granted"}).json()
    assert len(by_type["items"]) == 3


def test_may_contact_only_on_a_current_grant(client: TestClient, db: Database) -> None:
    customer_id = new_customer(client)
    # no answer: no
    assert service_says(db, customer_id, "email", "marketing") is False
    assert contactable(client, customer_id, "email", "marketing") is False

    put(client, customer_id, "email", "marketing", status="granted")
    assert service_says(db, customer_id, "email", "marketing") is True
    assert contactable(client, customer_id, "email", "marketing") is True
    # other purposes and channels are independent
    assert service_says(db, customer_id, "email", "surveys") is False
    assert contactable(client, customer_id, "email", "transactional") is False
    assert contactable(client, customer_id, "sms", "marketing") is False

    put(client, customer_id, "email", "marketing", status="withdrawn")
    assert service_says(db, customer_id, "email", "marketing") is False
    assert contactable(client, customer_id, "email", "marketing") is False

    put(client, customer_id, "email", "surveys", status="granted")
    put(client, customer_id, "email", "marketing", status="granted")
    put(client, customer_id, "email", "marketing", status="denied")
    assert contactable(client, customer_id, "email", "marketing") is False
    assert contactable(client, customer_id, "email", "surveys") is True


def test_consents_of_customers_are_independent(client: TestClient) -> None:
    ana = new_customer(client, "ana@example.com")
    bea = new_customer(client, "bea@example.com")
    put(client, ana, "sms", "marketing", status="granted")
    assert contactable(client, ana, "sms", "marketing") is True
    assert contactable(client, bea, "sms", "marketing") is False


def test_a_merged_away_id_answers_for_the_survivor(client: TestClient) -> None:
    ana = new_customer(client, "ana@example.com")
    bea = new_customer(client, "bea@example.com")
    put(client, bea, "push", "transactional", status="granted")
    merged = client.post(f"{API}/customers/{ana}/merge", json={"other_customer_id": bea})
    assert merged.status_code == 201, merged.text
    assert contactable(client, ana, "push", "transactional") is True
    assert contactable(client, bea, "push", "transactional") is True
    put(client, ana, "push", "transactional", status="withdrawn")
    assert contactable(client, bea, "push", "transactional") is False


@pytest.mark.parametrize(
    ("channel", "purpose", "body", "field"),
    [
        ("fax", "marketing", {"status": "granted", "source": "web"}, "channel"),
        ("email", "spam", {"status": "granted", "source": "web"}, "purpose"),
        ("email", "marketing", {"status": "maybe", "source": "web"}, "status"),
        ("email", "marketing", {"status": "granted", "source": "carrier-pigeon"}, "source"),
        ("email", "marketing", {"source": "web"}, "status"),
        ("email", "marketing", {"status": "granted", "source": "web", "colour": "red"}, "colour"),
    ],
)
def test_bad_consent_input_is_a_422_naming_the_field(
    client: TestClient, channel: str, purpose: str, body: dict[str, Any], field: str
) -> None:
    customer_id = new_customer(client)
    response = client.put(f"{API}/customers/{customer_id}/consents/{channel}/{purpose}", json=body)
    assert field_error(response) == [field]
    # nothing was recorded
    assert client.get(f"{API}/customers/{customer_id}/consents").json() == {"items": []}
    timeline = client.get(f"{API}/customers/{customer_id}/timeline").json()["items"]
    assert not [e for e in timeline if e["type"].startswith("consent.")]


@pytest.mark.parametrize(("channel", "purpose", "field"), [("fax", "marketing", "channel"), ("sms", "spam", "purpose")])
def test_contactable_with_unknown_channel_or_purpose_is_a_422(
    client: TestClient, channel: str, purpose: str, field: str
) -> None:
    customer_id = new_customer(client)
    response = client.get(f"{API}/customers/{customer_id}/contactable/{channel}/{purpose}")
    assert field_error(response) == [field]


def test_unknown_customer_is_a_404(client: TestClient) -> None:
    unknown = "00000000-0000-7000-8000-000000000000"
    response = put(client, unknown, "email", "marketing", status="granted")
    assert response.status_code == 404
    assert response.json()["type"].endswith("/not-found")
    assert client.get(f"{API}/customers/{unknown}/contactable/email/marketing").status_code == 404
    assert client.get(f"{API}/customers/{unknown}/consents").status_code == 404


def test_readers_may_ask_but_not_change(client: TestClient, client_as: Callable[[str], TestClient]) -> None:
    customer_id = new_customer(client)
    analyst = client_as("analyst")
    refused = put(analyst, customer_id, "email", "marketing", status="granted")
    assert refused.status_code == 403
    assert refused.json()["type"].endswith("/forbidden")
    assert contactable(analyst, customer_id, "email", "marketing") is False
    clerk = client_as("store_clerk")
    assert put(clerk, customer_id, "email", "marketing", status="granted", source="store").status_code == 200
    assert contactable(analyst, customer_id, "email", "marketing") is True
