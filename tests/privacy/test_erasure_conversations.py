"""Erasure reaches what customers said in conversations and what deliveries carried."""

import base64
from pathlib import Path

from fastapi.testclient import TestClient

from omnicanal.db import Database
from tests.privacy.test_erasure import leaks

API = "/api/v1"
SAID = ["zenobia.quintana@example.com", "+34699887766", "calle del olmo 14", "zq-attachment.pdf"]


def test_erase_removes_messages_attachments_and_deliveries(client: TestClient, db: Database, tmp_path: Path) -> None:
    client.app.state.settings.attachments_dir = str(tmp_path / "files")  # type: ignore[attr-defined]
    subscription = client.post(
        f"{API}/webhook-subscriptions", json={"url": "http://127.0.0.1:9/hook", "event_types": ["message.*"]}
    )
    assert subscription.status_code == 201
    first = client.post(
        f"{API}/messages/inbound",
        json={
            "channel": "whatsapp",
            "identities": [{"type": "whatsapp", "value": "34699887766"}],
            "text": "Soy zenobia.quintana@example.com, vivo en Calle del Olmo 14",
            "external_id": "wamid.zq1",
            "attachments": [
                {"name": "zq-attachment.pdf", "content_type": "application/pdf",
                 "data": base64.b64encode(b"%PDF-1.4 zenobia").decode()},
            ],
        },
    )  # fmt: skip
    assert first.status_code == 201, first.text
    customer_id, conversation_id = first.json()["customer_id"], first.json()["conversation_id"]
    stored = list((tmp_path / "files").rglob("*"))
    assert any(path.is_file() for path in stored)
    reply = client.post(
        f"{API}/conversations/{conversation_id}/messages", json={"text": "Hola Zenobia, Calle del Olmo 14 recibido"}
    )
    assert reply.status_code == 201

    assert client.delete(f"{API}/customers/{customer_id}").status_code == 200

    assert leaks(db, SAID) == []
    assert not any(path.is_file() for path in (tmp_path / "files").rglob("*"))
    messages = client.get(f"{API}/conversations/{conversation_id}/messages").json()["items"]
    assert len(messages) == 2 and all(m["text"] == "" for m in messages)
    cancelled = client.get(f"{API}/outbox", params={"state": "dead"}).json()["items"]
    assert cancelled and all(item["payload"] == {} for item in cancelled)
