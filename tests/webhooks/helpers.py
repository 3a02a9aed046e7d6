from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

SUBSCRIPTIONS = "/api/v1/webhook-subscriptions"
INBOUND = {"channel": "sms", "identities": [{"type": "phone", "value": "612345678"}], "text": "hola"}


def subscribe(client: TestClient, url: str, event_types: list[str], **extra: Any) -> dict[str, Any]:
    response = client.post(SUBSCRIPTIONS, json={"url": url, "event_types": event_types, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def inbound(client: TestClient, external_id: str, **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/v1/messages/inbound", json={**INBOUND, "external_id": external_id, **overrides})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def deliver(app: FastAPI) -> None:
    app.state.outbox_worker.drain()


def deliveries(client: TestClient, subscription_id: str, **params: str) -> list[dict[str, Any]]:
    response = client.get(f"{SUBSCRIPTIONS}/{subscription_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body
