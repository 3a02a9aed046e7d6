"""Files an agent sends in the web chat: the visitor opens them through signed, expiring links."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient

from omnicanal.channels.webchat import files
from tests.channels.test_webchat import connect, hello, make_webchat, say

PDF = b"%PDF-1.4 guia de tallas"


def agent_reply_with_a_file(client: TestClient, app: Any, webchat: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    device = "device-" + uuid.uuid4().hex
    with connect(client, webchat) as ws:
        hello(ws, device)
        conversation = say(ws, "¿Tenéis guía de tallas?")["message"]["conversation_id"]
        attachments = [
            {"name": "guía de tallas.pdf", "content_type": "application/pdf", "data": base64.b64encode(PDF).decode()},
            {"name": "catálogo", "content_type": "application/pdf", "url": "https://shop.example/catalogo.pdf"},
        ]
        reply = client.post(f"/api/v1/conversations/{conversation}/messages",
                            json={"text": "Aquí la tienes", "attachments": attachments})  # fmt: skip
        assert reply.status_code == 201, reply.text
        app.state.outbox_worker.run_once()
        frame = ws.receive_json()
        while frame["type"] != "message" or frame["message"]["direction"] != "outbound":
            frame = ws.receive_json()
    return device, frame["message"]


def test_the_visitor_downloads_the_file_the_agent_sent_by_its_signed_link(client: TestClient, app: Any) -> None:
    webchat = make_webchat(client)
    device, live = agent_reply_with_a_file(client, app, webchat)
    pdf, linked = live["attachments"]
    assert pdf["name"] == "guía de tallas.pdf" and pdf["url"].startswith("/widget/files/")
    assert linked["url"] == "https://shop.example/catalogo.pdf"  # a file given by address is opened there
    download = client.get(pdf["url"])
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == "attachment; filename*=UTF-8''gu%C3%ADa%20de%20tallas.pdf"
    assert download.headers["x-content-type-options"] == "nosniff"
    # the history gives fresh links too
    with connect(client, webchat) as ws:
        history = hello(ws, device)["messages"]
    assert client.get(history[-1]["attachments"][0]["url"]).content == PDF


def test_a_link_that_is_altered_expired_or_for_another_file_opens_nothing(client: TestClient, app: Any) -> None:
    webchat = make_webchat(client)
    _, live = agent_reply_with_a_file(client, app, webchat)
    url = live["attachments"][0]["url"]
    path, query = urlsplit(url).path, parse_qs(urlsplit(url).query)
    expires, signature = query["e"][0], query["s"][0]
    assert client.get(path).status_code == 404  # unsigned
    assert client.get(f"{path}?e={int(expires) + 3600}&s={signature}").status_code == 404  # a longer life
    message_id = path.split("/")[3]
    assert client.get(f"/widget/files/{message_id}/1?e={expires}&s={signature}").status_code == 404
    secret = app.state.settings.secret_key
    stale = files.file_link(secret, uuid.UUID(message_id), 0, now=time.time() - files.LINK_SECONDS - 1)
    assert client.get(stale).status_code == 404


def test_files_of_private_notes_are_never_served(client: TestClient, app: Any) -> None:
    webchat = make_webchat(client)
    with connect(client, webchat) as ws:
        hello(ws, "device-" + uuid.uuid4().hex)
        conversation = say(ws, "Hola")["message"]["conversation_id"]
    note = client.post(f"/api/v1/conversations/{conversation}/messages", json={
        "text": "Interno", "private": True,
        "attachments": [{"name": "x.pdf", "content_type": "application/pdf", "data": base64.b64encode(PDF).decode()}],
    })  # fmt: skip
    assert note.status_code == 201, note.text
    link = files.file_link(app.state.settings.secret_key, uuid.UUID(note.json()["id"]), 0)
    assert client.get(link).status_code == 404
