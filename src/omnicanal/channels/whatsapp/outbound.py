"""Replies with files, buttons or lists, as the Cloud API's ``/messages`` payloads.

A file goes by ``link`` (a public URL), by ``id`` (a media id the agent gave, or one we get by uploading a
stored file to ``/{phone_number_id}/media``). WhatsApp carries one file per message: a reply with several
becomes several messages, its text the caption of the first file that takes one (audio and stickers
take none: the text then goes first, on its own). Each part's id is recorded as it is accepted, so a
retry of the reply sends only the parts still missing.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from omnicanal.channels.delivery import record_part, sent_parts
from omnicanal.db import Database
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent, classify_response
from omnicanal.storage import blob_store

CAPTIONED = ("image", "video", "document")


def interactive_body(interactive: dict[str, Any], text: str) -> dict[str, Any]:
    """An ``InteractiveIn`` as WhatsApp's ``interactive`` object."""
    body: dict[str, Any] = {"type": interactive["type"], "body": {"text": text}}
    if interactive.get("header"):
        body["header"] = {"type": "text", "text": interactive["header"]}
    if interactive.get("footer"):
        body["footer"] = {"text": interactive["footer"]}
    if interactive["type"] == "button":
        buttons = [{"type": "reply", "reply": {"id": b["id"], "title": b["title"]}} for b in interactive["buttons"]]
        body["action"] = {"buttons": buttons}
    else:
        sections = []
        for section in interactive["sections"]:
            rows = [{k: row[k] for k in ("id", "title", "description") if row.get(k)} for row in section["rows"]]
            sections.append({"title": section["title"], "rows": rows} if section.get("title") else {"rows": rows})
        body["action"] = {"button": interactive["button"], "sections": sections}
    return body


def plan(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages one reply becomes: ``{"type": ..., "<type>": {...}}`` each, files still unresolved."""
    text = str(payload.get("text") or "")
    interactive = payload.get("interactive")
    if interactive and interactive.get("type") == "location":
        place = {key: interactive[key] for key in ("latitude", "longitude", "name", "address") if key in interactive}
        pin = {"type": "location", "location": place}
        return [{"type": "text", "text": {"preview_url": False, "body": text}}, pin] if text.strip() else [pin]
    if interactive:
        return [{"type": "interactive", "interactive": interactive_body(interactive, text)}]
    files = list(payload.get("attachments") or [])
    if not files:
        return [{"type": "text", "text": {"preview_url": False, "body": text}}]
    parts: list[dict[str, Any]] = []
    caption_on = next((i for i, f in enumerate(files) if _kind(f) in CAPTIONED), None) if text.strip() else None
    if text.strip() and caption_on is None:
        parts.append({"type": "text", "text": {"preview_url": False, "body": text}})
    for index, file in enumerate(files):
        kind = _kind(file)
        media: dict[str, Any] = {"file": file}
        if index == caption_on:
            media["caption"] = text
        if kind == "document":
            media["filename"] = str(file.get("name") or "file")
        parts.append({"type": kind, kind: media})
    return parts


def _kind(file: dict[str, Any]) -> str:
    from omnicanal.conversations.reply_content import media_kind

    return str(file.get("kind") or media_kind(str(file.get("content_type", ""))))


class MediaSender:
    """Sends the parts of one reply through a WhatsApp transport's client."""

    def __init__(self, *, client: httpx.Client, messages_url: str, media_url: str, database: Database) -> None:
        self.client = client
        self.messages_url = messages_url
        self.media_url = media_url
        self.database = database

    def upload(self, file: dict[str, Any]) -> str:
        """``POST /{phone_number_id}/media`` (multipart) with a stored file; the media id to send it by."""
        try:
            data = blob_store(self.database.settings).get(str(file["key"]))
        except (OSError, KeyError) as exc:
            raise DeliveryError(f"the file {file.get('name')!r} is no longer stored: {exc}", permanent=True) from None
        content_type = str(file.get("content_type") or "application/octet-stream")
        try:
            response = self.client.post(
                self.media_url,
                data={"messaging_product": "whatsapp", "type": content_type},
                files={"file": (str(file.get("name") or "file"), data, content_type)},
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        classify_response(response)
        media_id = response.json().get("id")
        if not media_id:
            raise DeliveryError("the media upload answered without an id")
        return str(media_id)

    def resolve(self, part: dict[str, Any]) -> dict[str, Any]:
        kind = part["type"]
        if kind not in ("image", "audio", "video", "document", "sticker"):
            return part
        media = dict(part[kind])
        file = media.pop("file")
        if file.get("media_id"):
            media["id"] = str(file["media_id"])
        elif file.get("url"):
            media["link"] = str(file["url"])
        else:
            media["id"] = self.upload(file)
        return {"type": kind, kind: media}

    def send(self, envelope: Envelope, base: dict[str, Any]) -> Sent:
        parts = plan(envelope.payload)
        item_id = uuid.UUID(envelope.id)
        message_id = uuid.UUID(str(envelope.payload["message_id"]))
        several = len(parts) > 1
        done: dict[int, str] = {}
        if several:
            with self.database.read() as session:
                done = sent_parts(session, item_id)
        ids: list[str] = []
        for number, part in enumerate(parts):
            if number in done:
                ids.append(done[number])
                continue
            try:
                response = self.client.post(self.messages_url, json=base | self.resolve(part))
            except httpx.HTTPError as exc:
                raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
            classify_response(response)
            provider_id = str((response.json().get("messages") or [{}])[0].get("id") or "")
            ids.append(provider_id)
            if several and provider_id:
                with self.database.write() as session:
                    record_part(session, outbox_item_id=item_id, part=number, message_id=message_id,
                                provider_message_id=provider_id)  # fmt: skip
        return Sent(ids[0] or None, 200, f"{len(parts)} WhatsApp message(s)" if several else "")
