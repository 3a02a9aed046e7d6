"""Given API keys with roles, when endpoints are called, then access follows the role table."""

from collections.abc import Callable

from fastapi.testclient import TestClient


def test_missing_or_bad_key_is_a_401_problem(client: TestClient) -> None:
    anonymous = TestClient(client.app)
    response = anonymous.get("/api/v1/customers")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401
    wrong = anonymous.get("/api/v1/customers", headers={"Authorization": "Bearer oc_000000000000_nope"})
    assert wrong.status_code == 401


def test_role_checks_answer_403(client_as: Callable[[str], TestClient]) -> None:
    analyst = client_as("analyst")
    assert analyst.get("/api/v1/customers").status_code == 200
    denied = analyst.post("/api/v1/customers", json={"traits": {"first_name": "Eva"}})
    assert denied.status_code == 403
    assert "analyst" in denied.json()["detail"]
    agent = client_as("agent")
    assert agent.get("/api/v1/identity-conflicts").status_code == 403
    assert agent.post("/api/v1/api-keys", json={"name": "x", "role": "admin"}).status_code == 403


def test_api_key_is_shown_once_and_can_be_revoked(client: TestClient) -> None:
    created = client.post("/api/v1/api-keys", json={"name": "web shop", "role": "agent"})
    assert created.status_code == 201
    token = created.json()["key"]
    listed = client.get("/api/v1/api-keys").json()
    assert all("key" not in item for item in listed)
    shop = TestClient(client.app, headers={"Authorization": f"Bearer {token}"})
    assert shop.get("/api/v1/me").json()["role"] == "agent"
    assert client.delete(f"/api/v1/api-keys/{created.json()['id']}").status_code == 204
    assert shop.get("/api/v1/me").status_code == 401


def test_unknown_role_is_refused(client: TestClient) -> None:
    response = client.post("/api/v1/api-keys", json={"name": "x", "role": "wizard"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "role"


def test_staff_users_are_created_with_hashed_passwords(client: TestClient) -> None:
    response = client.post(
        "/api/v1/users", json={"email": "Lucia@Example.com", "role": "supervisor", "password": "a-long-password"}
    )
    assert response.status_code == 201
    assert response.json()["email"] == "lucia@example.com"
    assert "password" not in response.text
    short = client.post("/api/v1/users", json={"email": "b@example.com", "role": "agent", "password": "short"})
    assert short.status_code == 422


def test_health_and_openapi_need_no_key(client: TestClient) -> None:
    anonymous = TestClient(client.app)
    assert anonymous.get("/healthz").json()["status"] == "ok"
    paths = anonymous.get("/openapi.json").json()["paths"]
    assert "/api/v1/events" in paths and "/api/v1/customers/{customer_id}/timeline" in paths
    assert anonymous.get("/docs").status_code == 200
