"""Customer messages from any channel: one customer, one conversation, duplicates recognised."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from omnicanal.conversations.models import Conversation, Message
from omnicanal.customers.models import Customer
from omnicanal.db import Database
from omnicanal.settings import Settings
from tests.conversations.helpers import API, conversation, inbound, messages


def counts(db: Database) -> tuple[int, int, int]:
    with db.read() as session:
        return (
            session.scalar(select(func.count()).select_from(Customer)) or 0,
            session.scalar(select(func.count()).select_from(Conversation)) or 0,
            session.scalar(select(func.count()).select_from(Message)) or 0,
        )


def test_inbound_creates_customer_and_conversation(client: TestClient) -> None:
    body = inbound(client, text="¿Dónde está mi pedido?", external_id="wamid.1")
    assert set(body) == {"message_id", "conversation_id", "customer_id", "duplicate"}
    assert body["duplicate"] is False
    found = conversation(client, body["conversation_id"])
    assert found["customer_id"] == body["customer_id"]
    assert found["status"] == "open"
    assert found["last_channel"] == "whatsapp"
    items = messages(client, body["conversation_id"])
    assert [(m["id"], m["channel"], m["direction"], m["text"]) for m in items] == [
        (body["message_id"], "whatsapp", "inbound", "¿Dónde está mi pedido?")
    ]


def test_same_external_id_is_a_duplicate(client: TestClient, db: Database) -> None:
    first = inbound(client, external_id="wamid.dup")
    again = inbound(client, external_id="wamid.dup", text="something else", expect=200)
    assert again["duplicate"] is True
    assert (again["message_id"], again["conversation_id"], again["customer_id"]) == (
        first["message_id"], first["conversation_id"], first["customer_id"],
    )  # fmt: skip
    assert counts(db) == (1, 1, 1)
    # the same external id on another channel is another message
    other = inbound(
        client, channel="sms", identities=[{"type": "phone", "value": "612345678"}], external_id="wamid.dup"
    )
    assert other["duplicate"] is False
    assert counts(db)[2] == 2


def test_whatsapp_id_and_phone_are_one_customer_and_one_conversation(client: TestClient, db: Database) -> None:
    wa = inbound(client, channel="whatsapp", identities=[{"type": "whatsapp", "value": "34612345678"}])
    sms = inbound(client, channel="sms", identities=[{"type": "phone", "value": "612 345 678"}], text="por SMS")
    call = inbound(client, channel="email", identities=[{"type": "phone", "value": "+34 612-34-56-78"},
                                                          {"type": "email", "value": "Ana@Example.com"}])  # fmt: skip
    assert wa["customer_id"] == sms["customer_id"] == call["customer_id"]
    assert wa["conversation_id"] == sms["conversation_id"] == call["conversation_id"]
    assert counts(db) == (1, 1, 3)
    assert conversation(client, wa["conversation_id"])["last_channel"] == "email"


def test_messages_from_every_channel_interleave_in_time(client: TestClient) -> None:
    ana = [{"type": "email", "value": "ana@example.com"}, {"type": "whatsapp", "value": "34612345678"}]
    sent = []
    for n, channel in enumerate(["whatsapp", "email", "web", "email", "whatsapp"]):
        ids = ana if n == 0 else [ana[n % 2]] if channel != "web" else [{"type": "email", "value": "ana@example.com"}]
        sent.append(inbound(client, channel=channel, identities=ids, text=f"m{n}")["message_id"])
    conversation_id = inbound(client, channel="email", identities=[ana[0]], text="last")["conversation_id"]
    items = messages(client, conversation_id)
    assert [m["text"] for m in items] == ["m0", "m1", "m2", "m3", "m4", "last"]
    assert [m["channel"] for m in items] == ["whatsapp", "email", "web", "email", "whatsapp", "email"]
    page = client.get(f"{API}/conversations/{conversation_id}/messages", params={"limit": 4}).json()
    rest = client.get(
        f"{API}/conversations/{conversation_id}/messages", params={"limit": 4, "cursor": page["next_cursor"]}
    ).json()
    assert [m["text"] for m in page["items"] + rest["items"]] == ["m0", "m1", "m2", "m3", "m4", "last"]
    assert rest["next_cursor"] is None


def test_resolved_conversation_reopens_within_window_else_new(client: TestClient, settings: Settings) -> None:
    first = inbound(client)
    resolved = client.post(f"{API}/conversations/{first['conversation_id']}/status", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolved_at"] is not None
    again = inbound(client, text="one more thing")
    assert again["conversation_id"] == first["conversation_id"]
    reopened = conversation(client, first["conversation_id"])
    assert reopened["status"] == "open"
    assert reopened["resolved_at"] is None


def test_resolved_longer_ago_than_the_window_starts_a_new_conversation(
    client: TestClient, app: object, settings: Settings
) -> None:
    first = inbound(client)
    client.post(f"{API}/conversations/{first['conversation_id']}/status", json={"status": "resolved"})
    settings.reopen_window_seconds = 0  # the same settings object the app reads
    later = inbound(client, text="new question")
    assert later["customer_id"] == first["customer_id"]
    assert later["conversation_id"] != first["conversation_id"]
    assert conversation(client, first["conversation_id"])["status"] == "resolved"
    listed = client.get(f"{API}/conversations", params={"customer_id": first["customer_id"]}).json()["items"]
    assert {c["id"]: c["status"] for c in listed} == {
        first["conversation_id"]: "resolved", later["conversation_id"]: "open",
    }  # fmt: skip


def test_attachments_inline_stored_and_url_recorded(client: TestClient, settings: Settings, db: Database) -> None:
    data = b"%PDF-1.4 invoice"
    body = inbound(
        client,
        text="",
        attachments=[
            {"name": "factura 12.pdf", "content_type": "application/pdf", "data": base64.b64encode(data).decode()},
            {"name": "photo.jpg", "content_type": "image/jpeg", "url": "https://cdn.example.com/p.jpg"},
        ],
    )
    (message,) = messages(client, body["conversation_id"])
    stored, linked = message["attachments"]
    assert stored["size"] == len(data) and stored["content_type"] == "application/pdf"
    assert (Path(settings.attachments_dir) / stored["key"]).read_bytes() == data
    assert linked == {"name": "photo.jpg", "content_type": "image/jpeg", "url": "https://cdn.example.com/p.jpg"}


def test_bad_inbound_is_refused_and_nothing_stored(client: TestClient, settings: Settings, db: Database) -> None:
    settings.attachment_max_bytes = 10
    big = base64.b64encode(b"x" * 11).decode()
    small = base64.b64encode(b"x").decode()
    cases = [
        ({"channel": "carrier-pigeon"}, 422, "channel"),
        ({"text": "   "}, 422, "text"),
        ({"identities": []}, 422, "identit"),
        ({"identities": [{"type": "phone", "value": "not a phone"}]}, 422, "phone"),
        ({"attachments": [{"name": "a.bin", "content_type": "application/pdf", "data": big}]}, 413, "limit"),
        (
            {"attachments": [{"name": "a.exe", "content_type": "application/x-msdownload", "data": small}]},
            422,
            "not accepted",
        ),
        ({"attachments": [{"name": "a.pdf", "content_type": "application/pdf", "data": "@@@"}]}, 422, "base64"),
        ({"attachments": [{"name": "a.pdf", "content_type": "application/pdf"}]}, 422, "url or data"),
        ({"occurred_at": "2026-01-01T10:00:00"}, 422, "timezone"),
        ({"occurred_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, 422, "future"),
        ({"external_id": ""}, 422, "external_id"),
    ]
    for change, status, words in cases:
        body = {
            "channel": "whatsapp", "identities": [{"type": "whatsapp", "value": "34612345678"}], "text": "hola",
            "external_id": "x-1", "occurred_at": datetime.now(UTC).isoformat(),
        } | change  # fmt: skip
        response = client.post(f"{API}/messages/inbound", json=body)
        assert response.status_code == status, (change, response.text)
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert problem["status"] == status
        assert words in problem["detail"], (change, problem)
    assert counts(db) == (0, 0, 0)
    assert not Path(settings.attachments_dir).exists() or not any(Path(settings.attachments_dir).rglob("*.*"))


def test_unknown_customer_id_is_refused(client: TestClient, db: Database) -> None:
    response = client.post(
        f"{API}/messages/inbound",
        json={"channel": "web", "customer_id": "0190a0a0-0000-7000-8000-000000000000", "text": "hi",
              "external_id": "w-1", "occurred_at": datetime.now(UTC).isoformat()},
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert "customer_id" in response.json()["detail"]
    assert counts(db) == (0, 0, 0)


def test_attachment_files_of_messages_not_kept_are_removed(client: TestClient, settings: Settings) -> None:
    pdf = {"name": "a.pdf", "content_type": "application/pdf", "data": base64.b64encode(b"%PDF").decode()}
    inbound(client, external_id="wamid.att", attachments=[pdf])
    files = lambda: sorted(p for p in Path(settings.attachments_dir).rglob("*") if p.is_file())  # noqa: E731
    assert len(files()) == 1
    assert inbound(client, external_id="wamid.att", attachments=[pdf], expect=200)["duplicate"] is True
    assert len(files()) == 1
    response = client.post(
        f"{API}/messages/inbound",
        json={"channel": "web", "customer_id": "0190a0a0-0000-7000-8000-000000000000", "text": "", "attachments": [pdf],
              "external_id": "w-2", "occurred_at": datetime.now(UTC).isoformat()},
    )  # fmt: skip
    assert response.status_code == 422
    assert len(files()) == 1
