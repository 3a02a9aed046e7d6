"""Right to erasure and to access: nothing identifying survives an erase, everything is exported."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import omnicanal.models  # noqa: F401 - every table registered on Base.metadata
from omnicanal.db import Base, Database
from omnicanal.timeline.models import Event

API = "/api/v1"
T0 = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)

EMAIL_TYPED = "Zenobia.Quixtrel@Example.org"
EMAIL = "zenobia.quixtrel@example.org"
PHONE_TYPED = "+34 655 12 34 98"
PHONE = "+34655123498"
PHONE_NATIONAL = "655123498"
CARD_TYPED = "ZQ-7788-1122"
CARD = "ZQ77881122"
DEVICE = "dev-zq-5531-ab"
OTHER_EMAIL = "zq.alterna@example.net"
OTHER_EXTERNAL_TYPED = "CRM:ZQ-990077"
OTHER_EXTERNAL = "crm:ZQ-990077"
REFUSED_CARD = "ZQ00009999"
FIRST_NAME = "Zenobia"
LAST_NAME = "Quixtrel"
NICKNAME = "Zenquix"

ERASED_STRINGS = [
    EMAIL_TYPED, EMAIL, PHONE_TYPED, PHONE, PHONE_NATIONAL, CARD_TYPED, CARD, DEVICE, OTHER_EMAIL,
    OTHER_EXTERNAL_TYPED, OTHER_EXTERNAL, REFUSED_CARD, FIRST_NAME, LAST_NAME, NICKNAME,
]  # fmt: skip


def event(client: TestClient, event_id: str, identities: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    minute = extra.pop("minute", 0)
    response = client.post(
        f"{API}/events",
        json={
            "id": event_id,
            "type": extra.pop("type", "page.viewed"),
            "channel": extra.pop("channel", "web"),
            "occurred_at": (T0 + timedelta(minutes=minute)).isoformat(),
            "identities": [{"type": k, "value": v} for k, v in identities],
            **extra,
        },
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def build_customer(client: TestClient, *, idempotency_key: str | None = None) -> dict[str, str]:
    """A customer with every kind of personal data, and a second customer merged into it."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    created = client.post(
        f"{API}/customers",
        headers=headers,
        json={
            "traits": {"first_name": FIRST_NAME, "last_name": LAST_NAME, "language": "es"},
            "identities": [
                {"type": "email", "value": EMAIL_TYPED},
                {"type": "phone", "value": PHONE_TYPED},
                {"type": "loyalty_card", "value": CARD_TYPED},
                {"type": "device_id", "value": DEVICE},
            ],
        },
    )
    assert created.status_code == 201, created.text
    main = created.json()["id"]

    mentions = {"note": f"asked to be called at {PHONE_TYPED} or written to {EMAIL_TYPED}", "name": FIRST_NAME}
    event(client, f"order-{FIRST_NAME.lower()}-1", [("email", EMAIL)], type="order.placed", properties=mentions)
    event(client, "visit-1", [("device_id", DEVICE)], minute=1, properties={"url": f"/account?email={EMAIL}"})
    # a second card would break the one-card limit: queued for review, naming the card
    event(client, "visit-2", [("phone", PHONE_NATIONAL), ("loyalty_card", REFUSED_CARD)], minute=2)

    other = event(client, "crm-1", [("email", OTHER_EMAIL), ("external", OTHER_EXTERNAL_TYPED)], minute=3)[
        "customer_id"
    ]
    patched = client.patch(f"{API}/customers/{other}", json={"attributes": {"nickname": NICKNAME}})
    assert patched.status_code == 200, patched.text
    for channel, purpose in (("email", "marketing"), ("sms", "transactional")):
        put = client.put(
            f"{API}/customers/{main}/consents/{channel}/{purpose}",
            json={"status": "granted", "source": "web", "proof": f"{FIRST_NAME} {LAST_NAME} <{EMAIL}> ticked the box"},
        )
        assert put.status_code == 200, put.text
    # the two people turn out to be one: an event links them and they merge automatically
    linked = event(client, f"link-{OTHER_EMAIL}", [("email", OTHER_EMAIL), ("email", EMAIL_TYPED)], minute=4)
    assert linked["customer_id"] == main
    return {"main": main, "other": other}


def table_dump(db: Database) -> dict[str, list[str]]:
    """Every row of every table, every value as text (JSON included), lowercased."""
    dump: dict[str, list[str]] = {}
    with db.read() as session:
        for table in Base.metadata.sorted_tables:
            rows = session.execute(select(table)).all()
            dump[table.name] = [
                json.dumps([_plain(v) for v in row], default=str, ensure_ascii=False).lower() for row in rows
            ]
    return dump


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool | type(None) | dict | list):
        return value
    return str(value)


def leaks(db: Database, strings: list[str]) -> list[tuple[str, str, str]]:
    found = []
    for table, rows in table_dump(db).items():
        for row in rows:
            for needle in strings:
                if needle.lower() in row:
                    found.append((needle, table, row[:200]))
    return found


def test_erase_leaves_no_identifier_in_any_table(client: TestClient, db: Database) -> None:
    ids = build_customer(client)
    # the scan does find the data before the erase
    before = {needle for needle, _, _ in leaks(db, ERASED_STRINGS)}
    assert before == set(ERASED_STRINGS) - {CARD_TYPED}  # only ever stored normalized

    response = client.delete(f"{API}/customers/{ids['main']}")
    assert response.status_code == 200, response.text
    assert response.json()["customer_id"] == ids["main"]
    assert response.json()["erased_customers"] == 2

    assert leaks(db, ERASED_STRINGS) == []

    for customer_id in ids.values():
        gone = client.get(f"{API}/customers/{customer_id}", follow_redirects=False)
        assert gone.status_code == 404
        assert gone.headers["content-type"].startswith("application/problem+json")
    found = client.get(f"{API}/customers", params={"identity": f"email:{EMAIL}"}).json()["items"]
    assert found == []

    # the same person coming back is a stranger: a new customer
    again = event(
        client,
        "after-erase-1",
        [("email", EMAIL_TYPED), ("phone", PHONE_TYPED), ("loyalty_card", CARD_TYPED), ("device_id", DEVICE)],
        minute=30,
    )
    assert again["duplicate"] is False
    assert again["customer_id"] not in ids.values()
    fresh = client.get(f"{API}/customers/{again['customer_id']}").json()
    assert {(i["type"], i["value"]) for i in fresh["identities"]} == {
        ("email", EMAIL),
        ("phone", PHONE),
        ("loyalty_card", CARD),
        ("device_id", DEVICE),
    }
    assert fresh["traits"] == {}
    assert [e["id"] for e in client.get(f"{API}/customers/{again['customer_id']}/timeline").json()["items"]] == [
        "after-erase-1"
    ]


def test_erase_keeps_anonymous_counts(client: TestClient, db: Database) -> None:
    ids = build_customer(client)
    with db.read() as session:
        types_before = sorted(session.scalars(select(Event.type)))
    assert client.delete(f"{API}/customers/{ids['main']}").status_code == 200
    with db.read() as session:
        rows = session.execute(select(Event.type, Event.properties, Event.event_id)).all()
    # the events stay as counts (type, channel, time) with nothing in them
    assert sorted(t for t, _, _ in rows) == types_before
    assert all(properties == {} for _, properties, _ in rows)
    assert all(event_id.startswith("erased_") for _, _, event_id in rows)


def test_erasing_twice_or_an_unknown_customer_is_a_404(client: TestClient) -> None:
    ids = build_customer(client)
    assert client.delete(f"{API}/customers/{ids['main']}").status_code == 200
    again = client.delete(f"{API}/customers/{ids['main']}")
    assert again.status_code == 404
    assert again.json()["status"] == 404
    unknown = client.delete(f"{API}/customers/00000000-0000-7000-8000-000000000000")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")


def test_erase_reaches_stored_idempotent_responses(client: TestClient, db: Database) -> None:
    ids = build_customer(client, idempotency_key="create-zenobia-1")
    assert client.delete(f"{API}/customers/{ids['main']}").status_code == 200
    assert [(needle, table) for needle, table, _ in leaks(db, ERASED_STRINGS)] == []


@pytest.mark.parametrize("role", ["analyst", "supervisor", "agent", "marketer"])
def test_only_an_admin_may_erase(client: TestClient, client_as: Callable[[str], TestClient], role: str) -> None:
    ids = build_customer(client)
    response = client_as(role).delete(f"{API}/customers/{ids['main']}")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 403
    assert body["type"].endswith("/forbidden")
    # nothing was erased
    assert client.get(f"{API}/customers/{ids['main']}").status_code == 200


def test_export_holds_everything(client: TestClient) -> None:
    ids = build_customer(client)
    response = client.get(f"{API}/customers/{ids['main']}/export")
    assert response.status_code == 200, response.text
    assert "attachment" in response.headers["content-disposition"]
    document = response.json()
    assert document["customer_id"] == ids["main"]
    assert document["merged_customer_ids"] == [ids["other"]]

    identities = {(i["type"], i["value"]) for i in document["identities"]}
    assert identities == {
        ("email", EMAIL),
        ("phone", PHONE),
        ("loyalty_card", CARD),
        ("device_id", DEVICE),
        ("email", OTHER_EMAIL),
        ("external", OTHER_EXTERNAL),
    }
    event_ids = {e["event_id"] for e in document["events"]}
    assert {f"order-{FIRST_NAME.lower()}-1", "visit-1", "visit-2", "crm-1", f"link-{OTHER_EMAIL}"} <= event_ids
    order = next(e for e in document["events"] if e["event_id"] == f"order-{FIRST_NAME.lower()}-1")
    assert EMAIL_TYPED in order["properties"]["note"]
    assert {(c["channel"], c["purpose"], c["status"]) for c in document["consents"]} == {
        ("email", "marketing", "granted"),
        ("sms", "transactional", "granted"),
    }
    assert all(EMAIL in c["proof"] for c in document["consents"])
    (merge,) = document["merges"]
    assert (merge["survivor_id"], merge["merged_id"]) == (ids["main"], ids["other"])
    profiles = {p["id"]: p for p in document["profile"]}
    assert profiles[ids["main"]]["traits"]["first_name"] == FIRST_NAME
    assert profiles[ids["other"]]["traits"]["attributes"] == {"nickname": NICKNAME}


def test_export_of_an_unknown_customer_is_a_404_problem(client: TestClient) -> None:
    response = client.get(f"{API}/customers/00000000-0000-7000-8000-000000000000/export")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/not-found")


def test_export_permissions(client: TestClient, client_as: Callable[[str], TestClient]) -> None:
    ids = build_customer(client)
    assert client_as("supervisor").get(f"{API}/customers/{ids['main']}/export").status_code == 200
    denied = client_as("analyst").get(f"{API}/customers/{ids['main']}/export")
    assert denied.status_code == 403
    assert denied.json()["type"].endswith("/forbidden")
