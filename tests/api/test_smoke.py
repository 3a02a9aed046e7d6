from fastapi.testclient import TestClient


def test_event_creates_customer_and_timeline(client: TestClient) -> None:
    response = client.post(
        "/api/v1/events",
        json={
            "id": "evt-1",
            "type": "page.viewed",
            "channel": "web",
            "occurred_at": "2026-11-20T10:00:00Z",
            "identities": [{"type": "email", "value": "Ana@Example.com"}],
            "properties": {"url": "/"},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["duplicate"] is False
    found = client.get("/api/v1/customers", params={"identity": "email:ANA@example.com"}).json()
    assert found["items"][0]["id"] == body["customer_id"]
    timeline = client.get(f"/api/v1/customers/{body['customer_id']}/timeline").json()
    assert [e["id"] for e in timeline["items"]] == ["evt-1"]
