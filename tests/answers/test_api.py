"""The answers API on SQLite and PostgreSQL: create, list, validate, suggest, render."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from omnicanal.answers import service
from omnicanal.answers.demo_data import DEMO_ANSWERS

API = "/api/v1/answers"

ORDER_STATUS = {
    "title": "Estado del pedido",
    "body": "Hola {{customer.first_name}}, tu pedido **{{order.number}}** está *en camino*.\n"
    "Síguelo en [tu cuenta](https://shop.example/cuenta?p=1&q=2).\n\n- Entrega en 24-48 h\n- Sin coste",
    "language": "es",
    "tags": ["Pedidos", "envíos"],
    "shortcut": "Pedido",
}


def create(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post(API, json={**ORDER_STATUS, **overrides})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


def load_demo(client: TestClient) -> None:
    for data in DEMO_ANSWERS:
        assert client.post(API, json=data.model_dump()).status_code == 201


def test_create_get_and_patch(client: TestClient) -> None:
    created = create(client)
    assert created["tags"] == ["pedidos", "envíos"] and created["shortcut"] == "pedido"
    assert created["active"] is True and created["created_by"].startswith("api_key:")
    fetched = client.get(f"{API}/{created['id']}")
    assert fetched.status_code == 200 and fetched.json() == created

    patched = client.patch(f"{API}/{created['id']}", json={"title": "  Estado   de tu pedido ", "shortcut": None})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["title"], patched.json()["shortcut"]) == ("Estado de tu pedido", None)
    assert patched.json()["body"] == created["body"]
    assert patched.json()["updated_at"] >= created["updated_at"]

    problem(client.get(f"{API}/{uuid.uuid4()}"), 404)
    problem(client.patch(f"{API}/{uuid.uuid4()}", json={"title": "x"}), 404)
    problem(client.patch(f"{API}/{created['id']}", json={"title": None}), 422, "title")
    problem(client.patch(f"{API}/{created['id']}", json={"colour": "red"}), 422, "colour")


def test_idempotency_key_creates_once(client: TestClient) -> None:
    headers = {"Idempotency-Key": "answer-1"}
    first = client.post(API, json=ORDER_STATUS, headers=headers)
    again = client.post(API, json=ORDER_STATUS, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(client.get(API).json()["items"]) == 1
    problem(client.post(API, json={**ORDER_STATUS, "title": "Otro"}, headers=headers), 409)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"language": "spanish"}, "language"),
        ({"language": "es_ES"}, "language"),
        ({"language": ""}, "language"),
        ({"body": "   \n "}, "body"),
        ({"body": "x" * 20_001}, "body"),
        ({"title": ""}, "title"),
        ({"tags": ["ok", "no,commas"]}, "tags[1]"),
        ({"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"shortcut": "two words"}, "shortcut"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_input_is_422_and_creates_nothing(client: TestClient, overrides: dict[str, Any], field: str) -> None:
    problem(client.post(API, json={**ORDER_STATUS, **overrides}), 422, field)
    assert client.get(API).json()["items"] == []


def test_missing_body_field_is_422(client: TestClient) -> None:
    problem(client.post(API, json={"title": "x", "language": "es"}), 422, "body")


def test_duplicate_shortcut_per_language_is_409(client: TestClient) -> None:
    first = create(client)
    duplicate = problem(client.post(API, json={**ORDER_STATUS, "shortcut": "PEDIDO", "title": "Otra"}), 409)
    assert duplicate["answer_id"] == first["id"]
    # the same shortcut in another language is fine, and so are many answers without one
    create(client, language="en", title="Order status")
    create(client, shortcut=None, title="Sin atajo 1")
    create(client, shortcut=None, title="Sin atajo 2")
    other = create(client, shortcut="envio", title="Envío")
    problem(client.patch(f"{API}/{other['id']}", json={"shortcut": "pedido"}), 409)
    # language normalization applies to the uniqueness too
    problem(client.post(API, json={**ORDER_STATUS, "language": "ES"}), 409)


def test_list_filters_and_pagination(client: TestClient) -> None:
    load_demo(client)
    create(client, language="es-MX", shortcut="pedido-mx", title="Estatus de tu orden")
    everything = client.get(API).json()
    assert len(everything["items"]) == 11 and everything["next_cursor"] is None

    def titles(**params: Any) -> list[str]:
        response = client.get(API, params=params)
        assert response.status_code == 200, response.text
        return [item["title"] for item in response.json()["items"]]

    assert set(titles(q="devolucion")) == {"Política de devoluciones"}  # accents ignored
    assert set(titles(q="DEVOLUCIONES")) == {"Política de devoluciones"}  # plural and case
    assert set(titles(q="returned")) == {"Return policy"}
    assert set(titles(q="pedid", language="es")) == {
        "¿Dónde está mi pedido? Estado del pedido", "Recogida en tienda", "Política de devoluciones",
        "Estatus de tu orden",
    }  # fmt: skip
    assert set(titles(q="pedid", language="es-MX")) == {"Estatus de tu orden"}
    assert set(titles(tag="click and collect")) == {"Recogida en tienda", "Store pickup"}
    assert set(titles(tag="Tiendas", language="es")) == {"Horario de apertura de las tiendas", "Recogida en tienda"}
    assert titles(q="zapatos voladores") == []

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = client.get(API, params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [item["id"] for item in everything["items"]] and len(set(seen)) == 11

    problem(client.get(API, params={"language": "castellano"}), 422, "language")
    problem(client.get(API, params={"cursor": "nonsense"}), 422, "cursor")
    problem(client.get(API, params={"limit": 0}), 422, "limit")
    problem(client.get(API, params={"q": "¿?"}), 422, "q")


def test_inactive_answers_can_be_filtered(client: TestClient) -> None:
    kept = create(client)
    retired = create(client, shortcut="viejo", title="Antiguo")
    assert client.patch(f"{API}/{retired['id']}", json={"active": False}).status_code == 200
    assert [a["id"] for a in client.get(API, params={"active": True}).json()["items"]] == [kept["id"]]
    assert [a["id"] for a in client.get(API, params={"active": False}).json()["items"]] == [retired["id"]]


def test_suggest_with_text_and_language(client: TestClient) -> None:
    load_demo(client)
    response = client.get(f"{API}/suggest", params={"text": "¿A qué hora abrís el sábado?", "language": "es"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == "es" and body["text"] == "¿A qué hora abrís el sábado?"
    assert body["items"][0]["answer"]["shortcut"] == "horario"
    assert body["items"][0]["same_language"] is True and body["items"][0]["score"] > 0

    english = client.get(f"{API}/suggest", params={"text": "where is my order", "language": "en", "limit": 1})
    assert [i["answer"]["shortcut"] for i in english.json()["items"]] == ["order"]

    problem(client.get(f"{API}/suggest"), 422, "text")
    problem(client.get(f"{API}/suggest", params={"text": "hola"}), 422, "language")
    problem(client.get(f"{API}/suggest", params={"text": "hola", "language": "xx-xx-xx"}), 422, "language")
    problem(client.get(f"{API}/suggest", params={"text": "hola", "language": "es", "limit": 500}), 422, "limit")


@pytest.fixture
def conversations() -> Iterator[dict[uuid.UUID, tuple[str, str, dict[str, Any]]]]:
    known: dict[uuid.UUID, tuple[str, str, dict[str, Any]]] = {}

    def provider(session: Session, conversation_id: uuid.UUID) -> tuple[str, str, dict[str, Any]] | None:
        assert isinstance(session, Session)
        return known.get(conversation_id)

    service.set_conversation_context_provider(provider)
    try:
        yield known
    finally:
        service.set_conversation_context_provider(None)


def test_suggest_for_a_conversation(
    client: TestClient, conversations: dict[uuid.UUID, tuple[str, str, dict[str, Any]]]
) -> None:
    load_demo(client)
    conversation = uuid.uuid4()
    conversations[conversation] = ("Hello! Where is my order? It's been a week", "en", {"order": {"number": "A-1"}})
    response = client.get(f"{API}/suggest", params={"conversation_id": str(conversation)})
    assert response.status_code == 200, response.text
    assert response.json()["language"] == "en"
    assert response.json()["items"][0]["answer"]["shortcut"] == "order"
    # explicit text overrides the last message, the conversation still gives the language
    typed = client.get(f"{API}/suggest", params={"conversation_id": str(conversation), "text": "returns"})
    assert typed.json()["items"][0]["answer"]["shortcut"] == "returns"
    problem(client.get(f"{API}/suggest", params={"conversation_id": str(uuid.uuid4())}), 404)
    problem(client.get(f"{API}/suggest", params={"conversation_id": "not-a-uuid"}), 422, "conversation_id")


def test_suggest_for_a_conversation_without_a_provider_is_404(client: TestClient) -> None:
    problem(client.get(f"{API}/suggest", params={"conversation_id": str(uuid.uuid4())}), 404)


def render(client: TestClient, answer_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/{answer_id}/render", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_render_for_sms_email_and_whatsapp(client: TestClient) -> None:
    answer = create(client)
    context = {"customer": {"first_name": "Ana"}, "order": {"number": "A-1042"}}

    sms = render(client, answer["id"], channel="sms", context=context)
    assert sms["text"] == (
        "Hola Ana, tu pedido A-1042 está en camino.\nSíguelo en tu cuenta (https://shop.example/cuenta?p=1&q=2).\n\n"
        "- Entrega en 24-48 h\n- Sin coste"
    )
    assert (sms["html"], sms["encoding"], sms["segments"], sms["missing_variables"]) == (None, "UCS-2", 3, [])
    assert sms["length"] == len(sms["text"]) == 136  # UCS-2 ("á", "í"): 67 + 67 + 2

    email = render(client, answer["id"], channel="email", context=context)
    assert email["html"] == (
        "<p>Hola Ana, tu pedido <strong>A-1042</strong> está <em>en camino</em>.<br>\n"
        'Síguelo en <a href="https://shop.example/cuenta?p=1&amp;q=2" rel="noopener noreferrer">tu cuenta</a>.</p>\n'
        "<ul>\n<li>Entrega en 24-48 h</li>\n<li>Sin coste</li>\n</ul>"
    )
    assert email["text"] == sms["text"] and email["segments"] is None

    whatsapp = render(client, answer["id"], channel="whatsapp", context=context)
    assert whatsapp["text"].startswith("Hola Ana, tu pedido *A-1042* está _en camino_.\n")
    assert whatsapp["html"] is None


def test_render_escapes_html_in_the_body_and_in_variables(client: TestClient) -> None:
    answer = create(client, body="<script>alert(1)</script> Hola **{{customer.first_name}}**", shortcut=None)
    email = render(client, answer["id"], channel="webchat", context={"customer": {"first_name": "<img src=x>*"}})
    assert email["html"] == "<p>&lt;script&gt;alert(1)&lt;/script&gt; Hola <strong>&lt;img src=x&gt;*</strong></p>"


def test_render_fills_customer_variables_from_the_profile(client: TestClient) -> None:
    customer = client.post(
        "/api/v1/customers",
        json={
            "traits": {"first_name": "Lucía", "last_name": "García"},
            "identities": [{"type": "email", "value": "Lucia@Example.com"}],
        },
    )
    assert customer.status_code == 201, customer.text
    answer = create(client, body="Hola {{customer.first_name}} ({{customer.email}}), soy {{agent.name}}.")
    rendered = render(client, answer["id"], channel="telegram", customer_id=customer.json()["id"])
    assert rendered["text"] == "Hola Lucía (lucia@example.com), soy."
    assert rendered["missing_variables"] == ["agent.name"]
    # the explicit context wins over the profile
    rendered = render(
        client, answer["id"], channel="sms", customer_id=customer.json()["id"],
        context={"customer": {"first_name": "Lu"}, "agent": {"name": "Carlos"}},
    )  # fmt: skip
    assert rendered["text"] == "Hola Lu (lucia@example.com), soy Carlos."
    assert (rendered["encoding"], rendered["segments"]) == ("GSM-7", 1)
    kept = render(client, answer["id"], channel="sms", keep_missing=True)
    assert kept["text"] == "Hola {{customer.first_name}} ({{customer.email}}), soy {{agent.name}}."
    assert kept["missing_variables"] == ["customer.first_name", "customer.email", "agent.name"]

    problem(client.post(f"{API}/{answer['id']}/render", json={"channel": "sms", "customer_id": str(uuid.uuid4())}), 404)
    problem(client.post(f"{API}/{answer['id']}/render", json={"channel": "fax"}), 422, "channel")
    problem(client.post(f"{API}/{uuid.uuid4()}/render", json={"channel": "sms"}), 404)


def test_roles(client: TestClient, client_as: Callable[[str], TestClient]) -> None:
    answer = create(client)
    for role in ("supervisor", "marketer"):
        assert client_as(role).post(API, json={**ORDER_STATUS, "shortcut": role}).status_code == 201
    for role in ("agent", "store_clerk", "analyst"):
        other = client_as(role)
        problem(other.post(API, json={**ORDER_STATUS, "shortcut": role}), 403)
        problem(other.patch(f"{API}/{answer['id']}", json={"title": "x"}), 403)
        assert other.get(API).status_code == 200
        assert other.get(f"{API}/suggest", params={"text": "pedido", "language": "es"}).status_code == 200
        assert other.post(f"{API}/{answer['id']}/render", json={"channel": "sms"}).status_code == 200
    anonymous = TestClient(client.app)
    problem(anonymous.get(API), 401)


def test_render_for_conversation_uses_the_providers_context(
    db: Any, client: TestClient, conversations: dict[uuid.UUID, tuple[str, str, dict[str, Any]]]
) -> None:
    answer = create(client)
    conversation = uuid.uuid4()
    conversations[conversation] = ("¿mi pedido?", "es", {"customer": {"first_name": "Ana"}, "order": {"number": "B-7"}})
    with db.read() as session:
        whatsapp = service.render_for_conversation(
            session, answer_id=uuid.UUID(answer["id"]), conversation_id=conversation, channel="whatsapp",
            context={"order": {"number": "B-8"}},
        )  # fmt: skip
        plain = service.render_for_conversation(
            session, answer_id=uuid.UUID(answer["id"]), conversation_id=conversation, channel="facebook"
        )
    assert whatsapp.startswith("Hola Ana, tu pedido *B-8* está _en camino_.")
    assert plain.startswith("Hola Ana, tu pedido B-7 está en camino.")
