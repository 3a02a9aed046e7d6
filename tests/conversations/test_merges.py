"""A customer merge leaves the customer one open conversation; undoing the merge gives each record its own back."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conversations.helpers import API, inbound, make_staff, set_agent
from tests.routing.test_capacity_race import second_client  # noqa: F401  (a fixture)
from tests.support.concurrency import all_at_once

PHONE = {"type": "phone", "value": "+34611445566"}
EMAIL = {"type": "email", "value": "lucia@example.com"}


def _open(client: TestClient, customer_id: str) -> list[dict[str, Any]]:
    listing = client.get(f"{API}/conversations", params={"customer_id": customer_id, "status": "open"})
    assert listing.status_code == 200, listing.text
    items: list[dict[str, Any]] = listing.json()["items"]
    return items


def _texts(client: TestClient, conversation_id: str) -> list[str]:
    response = client.get(f"{API}/conversations/{conversation_id}/messages")
    assert response.status_code == 200, response.text
    return [m["text"] for m in response.json()["items"]]


def _agent(client: TestClient, user_id: Any) -> dict[str, Any]:
    (agent,) = [a for a in client.get(f"{API}/agents").json() if a["user_id"] == str(user_id)]
    return agent


def test_a_customer_merged_by_a_message_keeps_one_conversation_with_everything_said(client: TestClient) -> None:
    by_sms = inbound(client, channel="sms", identities=[PHONE], text="Hola por SMS")
    by_email = inbound(client, channel="email", identities=[EMAIL], text="Hola por email")
    assert by_sms["customer_id"] != by_email["customer_id"]

    both = inbound(client, channel="app", identities=[PHONE, EMAIL], text="Soy la misma persona")

    assert [c["id"] for c in _open(client, both["customer_id"])] == [both["conversation_id"]]
    assert _texts(client, both["conversation_id"]) == ["Hola por SMS", "Hola por email", "Soy la misma persona"]
    again = inbound(client, channel="sms", identities=[PHONE], text="¿Seguís ahí?")
    assert again["conversation_id"] == both["conversation_id"]


def test_undoing_the_merge_gives_each_customer_its_conversation_back(client: TestClient, db: Any) -> None:
    agent_id = make_staff(db, "marta@example.com", name="Marta")
    set_agent(client, agent_id, online=True, capacity=5)
    first = inbound(client, channel="sms", identities=[PHONE], text="Mi pedido no llega")
    second = inbound(client, channel="email", identities=[EMAIL], text="Quiero cambiar la talla")
    assigned = client.post(f"{API}/conversations/{first['conversation_id']}/assign", json={"agent_id": str(agent_id)})
    assert assigned.status_code == 200, assigned.text
    pending = client.post(f"{API}/conversations/{first['conversation_id']}/status", json={"status": "pending"})
    assert pending.status_code == 200, pending.text
    assert _agent(client, agent_id)["open_count"] == 1

    merge = client.post(
        f"{API}/customers/{second['customer_id']}/merge", json={"other_customer_id": first["customer_id"]}
    )
    assert merge.status_code == 201, merge.text
    survivor = merge.json()["customer_id"]
    kept = second["conversation_id"]  # the latest thread stays open and takes the other's messages
    absorbed = client.get(f"{API}/conversations/{first['conversation_id']}").json()
    assert absorbed["status"] == "resolved"
    assert _agent(client, agent_id)["open_count"] == 0  # the resolved thread no longer counts against Marta
    assert [c["id"] for c in _open(client, survivor)] == [kept]
    assert _texts(client, kept) == ["Mi pedido no llega", "Quiero cambiar la talla"]
    later = inbound(client, channel="sms", identities=[PHONE], text="Gracias")
    assert later["conversation_id"] == kept

    undone = client.post(f"{API}/merges/{merge.json()['merge_id']}/undo")
    assert undone.status_code == 200, undone.text

    restored = client.get(f"{API}/conversations/{first['conversation_id']}").json()
    assert restored["status"] == "pending" and restored["customer_id"] == first["customer_id"]
    assert restored["assignee_id"] == str(agent_id)
    assert _agent(client, agent_id)["open_count"] == 1
    assert _texts(client, first["conversation_id"]) == ["Mi pedido no llega"]
    # what was said in the joined thread after the merge stays where it was written
    assert _texts(client, kept) == ["Quiero cambiar la talla", "Gracias"]
    assert client.get(f"{API}/conversations/{kept}").json()["status"] == "open"


def test_a_merge_of_customers_with_one_conversation_between_them_changes_no_thread(client: TestClient) -> None:
    only = inbound(client, channel="sms", identities=[PHONE], text="Hola")
    other = client.post(f"{API}/customers", json={"identities": [EMAIL], "traits": {"first_name": "Lucía"}})
    assert other.status_code == 201, other.text
    merge = client.post(f"{API}/customers/{only['customer_id']}/merge", json={"other_customer_id": other.json()["id"]})
    assert merge.status_code == 201, merge.text
    assert [c["id"] for c in _open(client, only["customer_id"])] == [only["conversation_id"]]
    assert _texts(client, only["conversation_id"]) == ["Hola"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_merges_and_messages_at_once_leave_each_person_one_thread(
    client: TestClient,
    second_client: TestClient,  # noqa: F811  (the fixture imported above)
    db: Any,
) -> None:
    """Two app instances: one merges pairs of customers while the other takes in their messages."""
    from tests.routing.test_capacity_race import check_counters

    agent = make_staff(db, "marta@example.com", name="Marta")
    set_agent(client, agent, online=True, capacity=50)
    pairs = []
    for n in range(8):
        phone = {"type": "phone", "value": f"+3461100{n:04d}"}
        email = {"type": "email", "value": f"persona{n}@example.com"}
        by_sms = inbound(client, channel="sms", identities=[phone], text=f"SMS {n}")
        by_email = inbound(client, channel="email", identities=[email], text=f"Email {n}")
        assigned = client.post(f"{API}/conversations/{by_sms['conversation_id']}/assign", json={"agent_id": str(agent)})
        assert assigned.status_code == 200, assigned.text
        pairs.append((n, phone, by_sms["customer_id"], by_email["customer_id"]))

    def merge(customer: str, other: str) -> None:
        response = client.post(f"{API}/customers/{customer}/merge", json={"other_customer_id": other})
        assert response.status_code == 201, response.text

    def write(n: int, phone: dict[str, str]) -> None:
        inbound(second_client, channel="sms", identities=[phone], text=f"Otra vez {n}")

    tasks = [lambda c=email_customer, o=sms_customer: merge(c, o) for _, _, sms_customer, email_customer in pairs]
    tasks += [lambda n=n, p=phone: write(n, p) for n, phone, _, _ in pairs]
    all_at_once(tasks)

    for n, _, _, email_customer in pairs:
        (thread,) = _open(client, email_customer)
        assert sorted(_texts(client, thread["id"])) == sorted([f"SMS {n}", f"Email {n}", f"Otra vez {n}"])
    check_counters(db)  # Marta's count follows the threads resolved by the joins
