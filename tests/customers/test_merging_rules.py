"""Merge rules through the API: limits, blocked values, priorities, redirects and undo."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

API = "/api/v1"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SYSTEM_EVENT_TYPES = {"customer.merged", "customer.merge_undone", "profile.updated"}


def post_event(
    client: TestClient, event_id: str, identities: list[tuple[str, str]], *, minute: int = 0, type_: str = "page.viewed"
) -> dict[str, Any]:
    response = client.post(
        f"{API}/events",
        json={
            "id": event_id,
            "type": type_,
            "channel": "web",
            "occurred_at": (T0 + timedelta(minutes=minute)).isoformat(),
            "identities": [{"type": kind, "value": value} for kind, value in identities],
        },
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def customer(client: TestClient, customer_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/customers/{customer_id}", follow_redirects=False)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def identity_set(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(i["type"], i["value"]) for i in body["identities"]}


def own_event_ids(client: TestClient, customer_id: str) -> set[str]:
    response = client.get(f"{API}/customers/{customer_id}/timeline", params={"limit": 200})
    assert response.status_code == 200, response.text
    return {e["id"] for e in response.json()["items"] if e["type"] not in SYSTEM_EVENT_TYPES}


def conflicts(client: TestClient, status: str = "open") -> list[dict[str, Any]]:
    response = client.get(f"{API}/identity-conflicts", params={"status": status})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def assert_problem(response: Any, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    if slug is not None:
        assert body["type"].endswith("/" + slug)
    return body


def create_customer(client: TestClient, traits: dict[str, Any], identities: list[tuple[str, str]]) -> str:
    response = client.post(
        f"{API}/customers",
        json={"traits": traits, "identities": [{"type": k, "value": v} for k, v in identities]},
    )
    assert response.status_code == 201, response.text
    customer_id: str = response.json()["id"]
    return customer_id


# -- per-type limits -----------------------------------------------------------------------


def test_two_loyalty_cards_meeting_open_a_conflict_instead_of_merging(client: TestClient) -> None:
    x = post_event(client, "e1", [("email", "ana@example.com"), ("loyalty_card", "CARD-0001")])["customer_id"]
    y = post_event(client, "e2", [("email", "bea@example.com"), ("loyalty_card", "CARD-0002")], minute=1)["customer_id"]
    assert x != y

    linked = post_event(client, "e3", [("loyalty_card", "card 0001"), ("loyalty_card", "CARD0002")], minute=2)
    assert linked["customer_id"] in (x, y)

    # no merge: both customers are still there, each with its own card
    assert identity_set(customer(client, x)) == {("email", "ana@example.com"), ("loyalty_card", "CARD0001")}
    assert identity_set(customer(client, y)) == {("email", "bea@example.com"), ("loyalty_card", "CARD0002")}

    (item,) = conflicts(client)
    assert {item["customer_id"], item["other_customer_id"]} == {x, y}
    assert {item["customer"]["id"], item["other_customer"]["id"]} == {x, y}
    assert item["identity_type"] == "loyalty_card"
    assert item["source_event_id"] == "e3"
    assert item["status"] == "open"
    assert "loyalty_card" in item["reason"]

    decided = client.post(f"{API}/identity-conflicts/{item['id']}", json={"action": "merge"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "merged"

    survivor, merged = item["customer_id"], item["other_customer_id"]
    gone = client.get(f"{API}/customers/{merged}", follow_redirects=False)
    assert gone.status_code == 308
    assert gone.headers["location"] == f"{API}/customers/{survivor}"
    assert {i for i in identity_set(customer(client, survivor)) if i[0] == "loyalty_card"} == {
        ("loyalty_card", "CARD0001"),
        ("loyalty_card", "CARD0002"),
    }
    assert conflicts(client) == []
    assert [c["id"] for c in conflicts(client, "merged")] == [item["id"]]
    # a decided conflict cannot be decided again
    assert_problem(client.post(f"{API}/identity-conflicts/{item['id']}", json={"action": "dismiss"}), 409, "conflict")


def test_dismissing_a_conflict_keeps_the_customers_apart(client: TestClient) -> None:
    x = post_event(client, "e1", [("email", "ana@example.com"), ("loyalty_card", "A1")])["customer_id"]
    y = post_event(client, "e2", [("email", "bea@example.com"), ("loyalty_card", "B2")], minute=1)["customer_id"]
    post_event(client, "e3", [("email", "ana@example.com"), ("email", "bea@example.com")], minute=2)

    (item,) = conflicts(client)
    assert item["identity_type"] == "email"
    decided = client.post(f"{API}/identity-conflicts/{item['id']}", json={"action": "dismiss"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "dismissed"
    assert customer(client, x)["merged_into"] is None
    assert customer(client, y)["merged_into"] is None
    assert conflicts(client) == []
    assert [c["id"] for c in conflicts(client, "dismissed")] == [item["id"]]


def test_a_second_card_for_one_customer_waits_for_review(client: TestClient) -> None:
    x = post_event(client, "e1", [("email", "ana@example.com"), ("loyalty_card", "A1")])["customer_id"]
    assert post_event(client, "e2", [("email", "ana@example.com"), ("loyalty_card", "Z9")])["customer_id"] == x
    assert identity_set(customer(client, x)) == {("email", "ana@example.com"), ("loyalty_card", "A1")}
    (item,) = conflicts(client)
    assert (item["customer_id"], item["other_customer_id"]) == (x, None)
    assert (item["identity_type"], item["identity_value"]) == ("loyalty_card", "Z9")
    # nothing to merge with: the only decision is to dismiss
    assert_problem(client.post(f"{API}/identity-conflicts/{item['id']}", json={"action": "merge"}), 409)
    assert client.post(f"{API}/identity-conflicts/{item['id']}", json={"action": "dismiss"}).status_code == 200


def test_conflict_decisions_validate_their_input(client: TestClient) -> None:
    body = assert_problem(
        client.post(f"{API}/identity-conflicts/00000000-0000-7000-8000-000000000000", json={"action": "explode"}),
        422,
    )
    assert [e["field"] for e in body["errors"]] == ["action"]
    assert_problem(
        client.post(f"{API}/identity-conflicts/00000000-0000-7000-8000-000000000000", json={"action": "merge"}),
        404,
        "not-found",
    )
    assert_problem(client.get(f"{API}/identity-conflicts", params={"status": "nope"}), 422)


# -- blocked values -----------------------------------------------------------------------


def test_a_blocked_email_never_joins_two_customers(client: TestClient) -> None:
    x = post_event(client, "e1", [("email", "test@test.com"), ("email", "ana@example.com")])["customer_id"]
    y = post_event(client, "e2", [("email", "TEST@test.com"), ("email", "bea@example.com")])["customer_id"]
    z = post_event(client, "e3", [("email", " test@TEST.com ")])["customer_id"]
    assert len({x, y, z}) == 3
    assert identity_set(customer(client, x)) == {("email", "ana@example.com")}
    assert identity_set(customer(client, y)) == {("email", "bea@example.com")}
    found = client.get(f"{API}/customers", params={"identity": "email:test@test.com"})
    assert found.status_code == 200
    assert found.json()["items"] == []
    refused = client.post(f"{API}/customers/{x}/identities", json={"type": "email", "value": "test@test.com"})
    assert_problem(refused, 422, "validation-error")
    assert conflicts(client) == []


# -- priority decides the survivor ---------------------------------------------------------


def test_an_anonymous_device_merges_into_the_email_customer(client: TestClient) -> None:
    anonymous = post_event(client, "d1", [("device_id", "dev-42")], minute=0)["customer_id"]
    assert post_event(client, "d2", [("device_id", "dev-42")], minute=1)["customer_id"] == anonymous
    known = post_event(client, "o1", [("email", "ana@example.com")], minute=2, type_="order.placed")["customer_id"]
    assert known != anonymous  # the device customer is the older one ...

    login = post_event(client, "l1", [("device_id", "dev-42"), ("email", "Ana@Example.com")], minute=3)
    assert login["customer_id"] == known  # ... but the email outranks the device id

    moved = client.get(f"{API}/customers/{anonymous}", follow_redirects=False)
    assert moved.status_code == 308
    assert moved.headers["location"] == f"{API}/customers/{known}"
    moved_timeline = client.get(f"{API}/customers/{anonymous}/timeline?limit=5", follow_redirects=False)
    assert moved_timeline.status_code == 308
    assert moved_timeline.headers["location"] == f"{API}/customers/{known}/timeline?limit=5"
    # following the redirect lands on the survivor
    assert client.get(f"{API}/customers/{anonymous}").json()["id"] == known

    assert identity_set(customer(client, known)) == {("email", "ana@example.com"), ("device_id", "dev-42")}
    # the anonymous visits are part of the customer's journey now
    assert own_event_ids(client, known) == {"d1", "d2", "o1", "l1"}
    # a later event from the device lands on the survivor directly
    assert post_event(client, "d3", [("device_id", "dev-42")], minute=4)["customer_id"] == known


def test_events_of_an_unknown_person_join_the_customer_once_the_identity_is_linked(client: TestClient) -> None:
    visitor = post_event(client, "v1", [("device_id", "app-7")])["customer_id"]
    post_event(client, "v2", [("device_id", "app-7")], minute=1)
    signup = post_event(client, "s1", [("device_id", "app-7"), ("phone", "+34 612 34 56 78")], minute=2)
    assert signup["customer_id"] == visitor
    by_phone = client.get(f"{API}/customers", params={"identity": "phone:612345678"}).json()["items"]
    assert [c["id"] for c in by_phone] == [visitor]
    assert own_event_ids(client, visitor) == {"v1", "v2", "s1"}


def test_on_equal_priority_the_older_customer_survives(client: TestClient) -> None:
    older = post_event(client, "e1", [("email", "ana@example.com")])["customer_id"]
    time.sleep(0.002)  # uuid7 orders by millisecond
    newer = post_event(client, "e2", [("email", "ana.work@example.com")], minute=1)["customer_id"]
    linked = post_event(client, "e3", [("email", "ana.work@example.com"), ("email", "ana@example.com")], minute=2)
    assert sorted([older, newer]) == [older, newer]  # uuid7: creation order
    assert linked["customer_id"] == older


# -- manual merge and undo -----------------------------------------------------------------


def test_manual_merge_and_undo_restore_both_customers(client: TestClient) -> None:
    a = create_customer(
        client, {"first_name": "Ana", "language": "es"}, [("email", "ana@example.com"), ("loyalty_card", "A1")]
    )
    b = create_customer(
        client,
        {"first_name": "Ana María", "last_name": "Soto", "timezone": "Europe/Madrid"},
        [("phone", "612345678"), ("external", "POS:77")],
    )
    post_event(client, "a-1", [("email", "ana@example.com")])
    post_event(client, "b-1", [("phone", "+34612345678")], minute=1)
    post_event(client, "b-2", [("external", "pos:77")], minute=2)
    before = {x: customer(client, x) for x in (a, b)}
    events_before = {x: own_event_ids(client, x) for x in (a, b)}

    response = client.post(f"{API}/customers/{a}/merge", json={"other_customer_id": b})
    assert response.status_code == 201, response.text
    merge = response.json()
    assert merge["customer_id"] == a

    merged_view = customer(client, a)
    assert identity_set(merged_view) == identity_set(before[a]) | identity_set(before[b])
    assert merged_view["traits"] == {
        "first_name": "Ana",  # the survivor's own value wins
        "language": "es",
        "last_name": "Soto",
        "timezone": "Europe/Madrid",
    }
    assert own_event_ids(client, a) == {"a-1", "b-1", "b-2"}
    assert client.get(f"{API}/customers/{b}", follow_redirects=False).status_code == 308
    history = client.get(f"{API}/customers/{a}/merges").json()
    assert [m["id"] for m in history] == [merge["merge_id"]]
    assert history[0]["state_before"]["merged"]["traits"] == before[b]["traits"]

    undone = client.post(f"{API}/merges/{merge['merge_id']}/undo")
    assert undone.status_code == 200, undone.text
    assert undone.json()["undone_at"] is not None

    for x in (a, b):
        after = customer(client, x)
        assert after["merged_into"] is None
        assert after["traits"] == before[x]["traits"]
        assert identity_set(after) == identity_set(before[x])
        assert own_event_ids(client, x) == events_before[x]

    again = client.post(f"{API}/merges/{merge['merge_id']}/undo")
    body = assert_problem(again, 409, "conflict")
    assert "already" in body["detail"]


def test_manual_merge_refuses_limits_unless_forced(client: TestClient) -> None:
    a = create_customer(client, {}, [("loyalty_card", "A1")])
    b = create_customer(client, {}, [("loyalty_card", "B2")])
    assert_problem(client.post(f"{API}/customers/{a}/merge", json={"other_customer_id": b}), 409, "conflict")
    assert customer(client, b)["merged_into"] is None
    forced = client.post(f"{API}/customers/{a}/merge", json={"other_customer_id": b, "force": True})
    assert forced.status_code == 201, forced.text
    assert len(identity_set(customer(client, a))) == 2


def test_merge_errors_are_problems(client: TestClient, client_as: Callable[[str], TestClient]) -> None:
    a = create_customer(client, {}, [("email", "ana@example.com")])
    b = create_customer(client, {}, [("email", "bea@example.com")])
    assert_problem(client.post(f"{API}/customers/{a}/merge", json={"other_customer_id": a}), 409)
    assert_problem(
        client.post(f"{API}/customers/{a}/merge", json={"other_customer_id": "00000000-0000-7000-8000-000000000000"}),
        404,
    )
    assert_problem(client.post(f"{API}/merges/00000000-0000-7000-8000-000000000000/undo"), 404, "not-found")
    agent = client_as("agent")
    assert_problem(agent.post(f"{API}/customers/{a}/merge", json={"other_customer_id": b}), 403, "forbidden")
    # merging twice: the second attempt finds them already one
    assert client.post(f"{API}/customers/{a}/merge", json={"other_customer_id": b}).status_code == 201
    assert_problem(client.post(f"{API}/customers/{a}/merge", json={"other_customer_id": b}), 409)


def test_survivor_is_found_by_the_name_it_received_in_a_merge(client: TestClient) -> None:
    a = create_customer(client, {}, [("email", "anon@example.com")])
    b = create_customer(client, {"first_name": "Zoe", "last_name": "Quintana"}, [("phone", "612345678")])
    assert client.post(f"{API}/customers/{a}/merge", json={"other_customer_id": b}).status_code == 201
    assert customer(client, a)["traits"]["first_name"] == "Zoe"
    found = client.get(f"{API}/customers", params={"q": "zoe"}).json()["items"]
    assert [c["id"] for c in found] == [a]
