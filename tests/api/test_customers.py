"""Customers and identities through the public API."""

from fastapi.testclient import TestClient


def _create(client: TestClient, **body: object) -> dict:
    response = client.post("/api/v1/customers", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_phone_written_three_ways_is_one_identity(client: TestClient) -> None:
    customer = _create(
        client, traits={"first_name": "Ana"}, identities=[{"type": "phone", "value": "+34 612 34 56 78"}]
    )
    for spelling in ("0034612345678", "612345678", "+34612345678"):
        found = client.get("/api/v1/customers", params={"identity": f"phone:{spelling}"}).json()["items"]
        assert [c["id"] for c in found] == [customer["id"]]
    clash = client.post("/api/v1/customers", json={"identities": [{"type": "phone", "value": "612 345 678"}]})
    assert clash.status_code == 409


def test_profile_traits_are_validated_and_patched(client: TestClient) -> None:
    customer = _create(
        client,
        traits={"first_name": "Lucía", "language": "es", "timezone": "Europe/Madrid", "birthday": "1990-04-02",
                "address": {"city": "Madrid", "country": "ES"}, "attributes": {"tier": "gold"}},
        identities=[{"type": "email", "value": "lucia@example.com"}],
    )  # fmt: skip
    assert customer["identities"][0]["source"] == "api"
    patched = client.patch(
        f"/api/v1/customers/{customer['id']}", json={"traits": {"last_name": "Pérez", "language": None}}
    )
    assert patched.status_code == 200
    traits = patched.json()["traits"]
    assert traits["last_name"] == "Pérez" and "language" not in traits and traits["first_name"] == "Lucía"
    bad = client.patch(f"/api/v1/customers/{customer['id']}", json={"timezone": "Mars/Olympus"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "traits.timezone"
    unknown = client.patch(f"/api/v1/customers/{customer['id']}", json={"shoe_size": 42})
    assert unknown.status_code == 422
    assert client.get(f"/api/v1/customers/{customer['id']}").json()["traits"]["last_name"] == "Pérez"


def test_search_by_name_and_identity(client: TestClient) -> None:
    ana = _create(client, traits={"first_name": "Ana", "last_name": "García"},
                  identities=[{"type": "email", "value": "ana@example.com"}])  # fmt: skip
    _create(client, traits={"first_name": "Pablo", "last_name": "Ruiz"})
    assert [c["id"] for c in client.get("/api/v1/customers", params={"q": "garc"}).json()["items"]] == [ana["id"]]
    assert [c["id"] for c in client.get("/api/v1/customers", params={"q": "ana@exa"}).json()["items"]] == [ana["id"]]
    assert client.get("/api/v1/customers", params={"q": "a"}).status_code == 422


def test_customer_list_is_cursor_paginated(client: TestClient) -> None:
    ids = {_create(client, traits={"first_name": f"P{i}"})["id"] for i in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/customers", params=params).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(seen) == ids and len(seen) == 5
    assert client.get("/api/v1/customers", params={"cursor": "garbage!"}).status_code == 422


def test_adding_an_identity_held_by_another_customer_merges_them(client: TestClient) -> None:
    first = _create(client, identities=[{"type": "email", "value": "eva@example.com"}])
    second = _create(client, identities=[{"type": "phone", "value": "611223344"}])
    response = client.post(
        f"/api/v1/customers/{first['id']}/identities", json={"type": "phone", "value": "+34611223344"}
    )
    assert response.status_code == 200
    survivor = response.json()
    assert {(i["type"], i["value"]) for i in survivor["identities"]} == {
        ("email", "eva@example.com"),
        ("phone", "+34611223344"),
    }
    moved = client.get(f"/api/v1/customers/{second['id']}", follow_redirects=False)
    assert moved.status_code == 308
    assert moved.headers["location"].endswith(survivor["id"])


def test_unknown_customer_and_bad_identity_are_problems(client: TestClient) -> None:
    missing = client.get("/api/v1/customers/0195f3f0-0000-7000-8000-000000000000")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert client.get("/api/v1/customers/not-a-uuid").status_code == 422
    bad = client.post("/api/v1/customers", json={"identities": [{"type": "email", "value": "nope"}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "identities[0].value"
    kind = client.post("/api/v1/customers", json={"identities": [{"type": "fax", "value": "1"}]})
    assert kind.status_code == 422 and kind.json()["errors"][0]["field"] == "identities[0].type"
    assert client.get("/api/v1/customers", params={"identity": "nocolon"}).status_code == 422


def test_idempotency_key_replays_the_first_answer(client: TestClient) -> None:
    body = {"traits": {"first_name": "Irene"}}
    headers = {"Idempotency-Key": "create-irene-1"}
    first = client.post("/api/v1/customers", json=body, headers=headers)
    again = client.post("/api/v1/customers", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post("/api/v1/customers", json={"traits": {"first_name": "Otra"}}, headers=headers)
    assert other.status_code == 409


def test_customer_360_has_profile_identities_consents_and_events(client: TestClient) -> None:
    customer = _create(
        client, traits={"first_name": "Hugo"}, identities=[{"type": "email", "value": "hugo@example.com"}]
    )
    client.put(f"/api/v1/customers/{customer['id']}/consents/email/marketing",
               json={"status": "granted", "source": "web", "proof": "form v1"})  # fmt: skip
    view = client.get(f"/api/v1/customers/{customer['id']}/360").json()
    assert view["customer"]["traits"]["first_name"] == "Hugo"
    assert view["consents"][0]["status"] == "granted"
    assert view["events"][0]["type"] == "consent.granted"
