"""The WhatsApp channel: ``/webhooks/whatsapp/{channel_id}`` (GET handshake, POST messages and statuses)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from omnicanal.channels.inbound import StatusUpdate, configured, in_writer, store, store_statuses
from omnicanal.channels.media import attach_file, fetch_list, queue_fetches
from omnicanal.channels.meta.signing import handshake, verified_body
from omnicanal.channels.registry import ChannelType, ConfigKey, register
from omnicanal.channels.service import ConfiguredChannel
from omnicanal.channels.whatsapp.outbound import MediaSender
from omnicanal.channels.whatsapp.templates import router as templates_router
from omnicanal.conversations.inbound import InboundInput
from omnicanal.customers.identities import InvalidIdentity, normalize
from omnicanal.db import Database, utcnow
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent, classify_response
from omnicanal.storage import type_allowed
from omnicanal.web import served_by

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
_OK = Response(status_code=200)


def wa_phone(wa_id: str) -> str:
    """The E.164 spelling of a WhatsApp id.

    WhatsApp ids are the international number without "+", except that Mexican mobiles keep the
    "1" after 52 that Mexico dropped from its numbering in 2019.
    """
    digits = wa_id.strip().lstrip("+")
    if digits.startswith("521") and len(digits) == 13:
        digits = "52" + digits[3:]
    return "+" + digits


def message_content(message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The text an agent reads, and the attachments, of one WhatsApp message of any type."""
    kind = message.get("type", "")
    if kind == "text":
        return str(message.get("text", {}).get("body", "")), []
    if kind in MEDIA_TYPES:
        media = message.get(kind, {})
        attachment = {
            "name": media.get("filename") or kind, "provider": "whatsapp", "kind": kind, "media_id": media.get("id"),
            "content_type": media.get("mime_type", ""), "filename": media.get("filename"),
        }  # fmt: skip
        return str(media.get("caption", "")), [attachment]
    if kind == "location":
        place = message.get("location", {})
        label = " — ".join(str(place[k]) for k in ("name", "address") if place.get(k))
        text = f"📍 {place.get('latitude')},{place.get('longitude')}" + (f" {label}" if label else "")
        return text, [{"provider": "whatsapp", "kind": "location", **place}]
    if kind == "interactive":
        chosen = message.get("interactive", {})
        reply = chosen.get("button_reply") or chosen.get("list_reply") or {}
        return str(reply.get("title", "")), [{"provider": "whatsapp", "kind": "choice", "id": reply.get("id")}]
    if kind == "button":  # a quick-reply button of a template
        button = message.get("button", {})
        return str(button.get("text", "")), [{"provider": "whatsapp", "kind": "choice", "id": button.get("payload")}]
    if kind == "reaction":
        return str(message.get("reaction", {}).get("emoji", "")), []
    return f"[{kind or 'unsupported'} message]", []


@router.get("/webhooks/whatsapp/{channel_id}", summary="WhatsApp webhook verification (hub.challenge)")
async def verify(channel_id: str, request: Request) -> PlainTextResponse:
    return handshake(request, await configured(request, channel_id, "whatsapp"))


async def incoming(request: Request) -> Response:
    """WhatsApp messages and statuses (Meta Cloud API), signed with ``X-Hub-Signature-256``."""
    channel = await configured(request, request.path_params["channel_id"], "whatsapp")
    body = await verified_body(request, channel)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _OK  # signed but unreadable: retrying will not help
    region = request.app.state.settings.default_region
    items: list[InboundInput] = []
    statuses: list[StatusUpdate] = []
    for entry in payload.get("entry") or ():
        for change in entry.get("changes") or ():
            value = change.get("value") or {}
            number_id = (value.get("metadata") or {}).get("phone_number_id")
            if number_id and number_id != channel["phone_number_id"]:
                continue  # another number of the same app: its own channel takes it
            for message in value.get("messages") or ():
                item = _inbound(message, channel, region)
                if item is not None:
                    items.append(item)
            for status in value.get("statuses") or ():
                update = _status(status)
                if update is not None:
                    statuses.append(update)
    results = await store(request, items)
    await store_statuses(request, statuses)
    fetch = fetch_list(items, results, "media_id")
    if fetch:
        # the files are fetched after the answer, by the outbox worker: Meta wants its 200 fast
        await in_writer(request, queue_fetches, fetch)
    return _OK


# served without FastAPI's request handling (the hot path: bench W1); the handler checks everything itself
_CHANNEL_ID = {"name": "channel_id", "in": "path", "required": True, "schema": {"type": "string"}}
router.add_api_route(
    "/webhooks/whatsapp/{channel_id}",
    incoming,
    methods=["POST"],
    summary="WhatsApp messages and statuses",
    route_class_override=served_by(incoming),
    openapi_extra={"parameters": [_CHANNEL_ID]},
)


def _inbound(message: dict[str, Any], channel: ConfiguredChannel, region: str) -> InboundInput | None:
    sender, message_id = message.get("from"), message.get("id")
    if not sender or not message_id:
        return None
    try:
        phone = normalize("phone", wa_phone(str(sender)), region)
    except InvalidIdentity:
        log.info("whatsapp %s: a sender id that is not a phone number; ignored", channel.id)
        return None
    text, attachments = message_content(message)
    try:
        occurred_at = datetime.fromtimestamp(int(message["timestamp"]), UTC)
    except (KeyError, ValueError, OverflowError):
        occurred_at = utcnow()
    return InboundInput(
        channel="whatsapp", identities=[("whatsapp", phone), ("phone", phone)], customer_id=None, text=text,
        attachments=attachments, external_id=str(message_id), occurred_at=min(occurred_at, utcnow()),
        channel_instance_id=channel.id,
    )  # fmt: skip


def _status(status: dict[str, Any]) -> StatusUpdate | None:
    kind = status.get("status")
    if not status.get("id") or kind not in ("sent", "delivered", "read", "failed"):
        return None
    reason = None
    if kind == "failed":
        errors = status.get("errors") or [{}]
        reason = f"{errors[0].get('code', '')} {errors[0].get('title', '')}".strip() or None
    return StatusUpdate(str(status["id"]), str(kind), reason)


class WhatsAppTransport:
    """``POST {api_base_url}/{api_version}/{phone_number_id}/messages`` with the access token."""

    def __init__(self, channel: ConfiguredChannel, database: Database) -> None:
        self.url = f"{channel['api_base_url']}/{channel['api_version']}/{channel['phone_number_id']}/messages"
        self.headers = {"Authorization": f"Bearer {channel['access_token']}"}
        self.media_url = f"{channel['api_base_url']}/{channel['api_version']}"
        self.upload_url = f"{self.media_url}/{channel['phone_number_id']}/media"
        self.database = database
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=15.0, headers=self.headers)
        return client

    def fetch_media(self, envelope: Envelope) -> Sent:
        """Fetch a received file (``GET /{media_id}`` for its URL, then the URL) into the attachment store."""
        payload, settings = envelope.payload, self.database.settings
        try:
            info = self._client().get(f"{self.media_url}/{payload['file_id']}")
            classify_response(info)
            found = info.json()
            declared = str(found.get("mime_type") or "")
            if declared and not type_allowed(declared.split(";")[0].strip(), settings.attachment_types):
                raise DeliveryError(f"{declared!r} is not in OMNICANAL_ATTACHMENT_TYPES", permanent=True)
            if int(found.get("file_size") or 0) > settings.attachment_max_bytes:
                raise DeliveryError("the file is larger than OMNICANAL_ATTACHMENT_MAX_BYTES", permanent=True)
            download = self._client().get(str(found["url"]))
            classify_response(download)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        data = download.content
        if len(data) > settings.attachment_max_bytes:
            raise DeliveryError("the file is larger than OMNICANAL_ATTACHMENT_MAX_BYTES", permanent=True)
        content_type = str(found.get("mime_type") or download.headers.get("content-type", "application/octet-stream"))
        attach_file(self.database, payload, data, content_type)
        return Sent(str(payload["file_id"]))

    def send(self, envelope: Envelope) -> Sent:
        if envelope.kind == "media":
            return self.fetch_media(envelope)
        payload = envelope.payload
        to = str(payload["to"]).lstrip("+")
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
        if payload.get("attachments") or payload.get("interactive"):
            media = MediaSender(client=self._client(), messages_url=self.url, media_url=self.upload_url,
                                database=self.database)  # fmt: skip
            return media.send(envelope, body)
        template = payload.get("template")
        if template:
            body |= {"type": "template", "template": template}
        else:
            body |= {"type": "text", "text": {"preview_url": False, "body": payload.get("text", "")}}
        try:
            response = self._client().post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        sent = classify_response(response)
        messages = response.json().get("messages") or [{}]
        return Sent(messages[0].get("id"), sent.status_code)


WHATSAPP = register(
    ChannelType(
        name="whatsapp",
        label="WhatsApp",
        delivers=("whatsapp",),
        keys=(
            ConfigKey("phone_number_id", required=True, help="the business number's id in the Cloud API"),
            ConfigKey("app_secret", required=True, secret=True, help="signs webhooks (X-Hub-Signature-256)"),
            ConfigKey("verify_token", required=True, secret=True, help="answered in the hub.challenge handshake"),
            ConfigKey("access_token", required=True, secret=True),
            ConfigKey("api_base_url", kind="url", default="https://graph.facebook.com"),
            ConfigKey("api_version", default="v21.0"),
            ConfigKey("templates", kind="list", default=(), help="approved template names, comma-separated"),
        ),
        routers=(router, templates_router),
        transport=WhatsAppTransport,
        webhook_paths=("/webhooks/whatsapp/{id}",),
    )
)
