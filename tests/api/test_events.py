"""Event ingest: resolution, idempotency, batches and bad input."""

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient


def _event(event_id: str, *identities: tuple[str, str], **extra: object) -> dict:
    return {
        "id": event_id,
        "type": extra.pop("type", "page.viewed"),
        "channel": extra.pop("channel", "web"),
        "occurred_at": extra.pop("occurred_at", "2026-11-20T10:00:00+01:00"),
        "identities": [{"type": t, "value": v} for t, v in identities],
        "properties": extra.pop("properties", {}),
        **extra,
    }


def test_same_event_id_twice_is_a_duplicate_with_the_original_result(client: TestClient) -> None:
    first = client.post("/api/v1/events", json=_event("e-1", ("email", "a@example.com")))
    again = client.post("/api/v1/events", json=_event("e-1", ("email", "someone-else@example.com")))
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == {**first.json(), "duplicate": True}
    assert client.get("/api/v1/customers", params={"identity": "email:someone-else@example.com"}).json()["items"] == []


def test_anonymous_device_events_join_the_customer_once_linked(client: TestClient) -> None:
    known = client.post("/api/v1/events", json=_event("e-1", ("email", "sofia@example.com"), channel="pos")).json()
    anon = client.post("/api/v1/events", json=_event("e-2", ("device_id", "dev-42"))).json()
    assert anon["customer_id"] != known["customer_id"]
    link = client.post("/api/v1/events", json=_event("e-3", ("device_id", "dev-42"), ("email", "Sofia@example.com"),
                                                       type="user.identified")).json()  # fmt: skip
    assert link["customer_id"] == known["customer_id"]
    timeline = client.get(f"/api/v1/customers/{known['customer_id']}/timeline").json()["items"]
    assert {"e-1", "e-2", "e-3"} <= {e["id"] for e in timeline}
    channels = client.get(f"/api/v1/customers/{known['customer_id']}/timeline", params={"channel": "pos"}).json()
    assert [e["id"] for e in channels["items"]] == ["e-1"]


def test_timeline_is_newest_first_and_paginated(client: TestClient) -> None:
    base = datetime(2026, 11, 1, tzinfo=UTC)
    events = [
        _event(f"t-{i}", ("email", "t@example.com"), occurred_at=(base + timedelta(hours=i)).isoformat(),
               type="page.viewed" if i % 2 else "cart.updated")
        for i in range(7)
    ]  # fmt: skip
    result = client.post("/api/v1/events", json={"events": events}).json()["results"]
    customer_id = result[0]["customer_id"]
    ids: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/api/v1/customers/{customer_id}/timeline", params=params).json()
        ids += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert ids == [f"t-{i}" for i in reversed(range(7))]
    carts = client.get(f"/api/v1/customers/{customer_id}/timeline", params={"type": "cart.updated"}).json()
    assert [e["id"] for e in carts["items"]] == ["t-6", "t-4", "t-2", "t-0"]


def test_batch_stores_valid_events_and_reports_rejected_ones(client: TestClient) -> None:
    batch = {
        "events": [
            _event("b-1", ("email", "b@example.com")),
            _event("b-2", ("email", "not-an-email")),
            _event("b-3", ("phone", "612345678")),
            _event("b-4", ("email", "b@example.com"), channel="carrier-pigeon"),
            _event("b-1", ("email", "b@example.com")),
        ]
    }
    results = client.post("/api/v1/events", json=batch).json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert results[0]["duplicate"] is False and results[2]["duplicate"] is False
    assert results[1]["error"]["errors"][0]["field"] == "events[1].identities[0].value"
    assert results[3]["error"]["errors"][0]["field"] == "events[3].channel"
    assert results[4]["duplicate"] is True and results[4]["customer_id"] == results[0]["customer_id"]


def test_bad_input_is_refused_and_changes_nothing(client: TestClient) -> None:
    def refused(body: object, field: str, **kwargs: object) -> None:
        response = client.post("/api/v1/events", json=body, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in response.json().get("errors", [])] or field in response.json()["detail"]

    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    refused(_event("x-1", ("email", "x@example.com"), occurred_at=future), "occurred_at")
    refused(_event("x-2", ("shoe", "42")), "identities[0].type")
    refused(_event("x-3", ("phone", "12")), "identities[0].value")
    refused(_event("x-4"), "identities")
    refused({"events": [_event(f"x-{i}", ("email", "x@example.com")) for i in range(1001)]}, "events")
    refused(
        _event("x-5", ("email", "x@example.com"), customer_id="0195f3f0-0000-7000-8000-000000000000"), "customer_id"
    )
    malformed = client.post("/api/v1/events", content=b"{not json", headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and malformed.json()["errors"][0]["field"] == "body"
    assert client.get("/api/v1/customers", params={"identity": "email:x@example.com"}).json()["items"] == []


def test_event_with_customer_id_only(client: TestClient) -> None:
    customer = client.post("/api/v1/customers", json={"traits": {"first_name": "Raúl"}}).json()
    response = client.post("/api/v1/events", json=_event("c-1", customer_id=customer["id"], channel="call_center"))
    assert response.status_code == 201 and response.json()["customer_id"] == customer["id"]
