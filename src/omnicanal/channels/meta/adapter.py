"""Messenger and Instagram direct messages: ``/webhooks/meta/{channel_id}`` (GET handshake, POST events).

One channel instance is one Facebook page and, optionally, the Instagram professional account linked
to it. Same signature scheme as WhatsApp; replies through the Send API of the page or the account.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from omnicanal.channels.inbound import StatusUpdate, configured, store, store_statuses
from omnicanal.channels.meta.signing import handshake, verified_body
from omnicanal.channels.registry import ChannelType, ConfigKey, register
from omnicanal.channels.service import ConfiguredChannel
from omnicanal.conversations.inbound import InboundInput
from omnicanal.db import Database, utcnow
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent, classify_response

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
CHANNEL_OF = {"page": "facebook", "instagram": "instagram"}


@router.get("/webhooks/meta/{channel_id}", summary="Messenger / Instagram webhook verification (hub.challenge)")
async def verify(channel_id: str, request: Request) -> PlainTextResponse:
    return handshake(request, await configured(request, channel_id, "meta"))


@router.post("/webhooks/meta/{channel_id}", summary="Messenger and Instagram direct messages")
async def incoming(channel_id: str, request: Request) -> Response:
    channel = await configured(request, channel_id, "meta")
    body = await verified_body(request, channel)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Response(status_code=200)
    conversation_channel = CHANNEL_OF.get(payload.get("object", ""))
    items: list[InboundInput] = []
    statuses: list[StatusUpdate] = []
    if conversation_channel is not None:
        ours = {channel.get("page_id"), channel.get("instagram_account_id")} - {None}
        for entry in payload.get("entry") or ():
            if str(entry.get("id")) not in ours:
                continue
            for event in entry.get("messaging") or ():
                item = _inbound(event, conversation_channel, channel)
                if item is not None:
                    items.append(item)
                for mid in (event.get("delivery") or {}).get("mids") or ():
                    statuses.append(StatusUpdate(str(mid), "delivered"))
                read_mid = (event.get("read") or {}).get("mid")
                if read_mid:  # Instagram names the message read (Messenger sends a watermark only)
                    statuses.append(StatusUpdate(str(read_mid), "read"))
    await store(request, items)
    await store_statuses(request, statuses)
    return Response(status_code=200)


def _inbound(event: dict[str, Any], conversation_channel: str, channel: ConfiguredChannel) -> InboundInput | None:
    message = event.get("message")
    sender = (event.get("sender") or {}).get("id")
    if not isinstance(message, dict) or not sender or message.get("is_echo") or not message.get("mid"):
        return None
    attachments = [
        {"provider": conversation_channel, "kind": a.get("type"), "url": (a.get("payload") or {}).get("url")}
        for a in message.get("attachments") or ()
    ]
    text = str(message.get("text") or "")
    quick = (message.get("quick_reply") or {}).get("payload")
    if quick:
        attachments.append({"provider": conversation_channel, "kind": "choice", "id": quick})
    if not text and not attachments:
        return None
    try:
        occurred_at = min(datetime.fromtimestamp(int(event["timestamp"]) / 1000, UTC), utcnow())
    except (KeyError, ValueError, OverflowError):
        occurred_at = utcnow()
    return InboundInput(
        channel=conversation_channel, identities=[(conversation_channel, str(sender))], customer_id=None, text=text,
        attachments=attachments, external_id=str(message["mid"]), occurred_at=occurred_at,
        channel_instance_id=channel.id,
    )  # fmt: skip


class MetaTransport:
    """Send API: ``POST {api_base_url}/{api_version}/{page or Instagram account id}/messages``."""

    def __init__(self, channel: ConfiguredChannel, database: Database) -> None:
        base = f"{channel['api_base_url']}/{channel['api_version']}"
        self.urls = {
            "facebook": f"{base}/{channel['page_id']}/messages",
            "instagram": f"{base}/{channel.get('instagram_account_id') or channel['page_id']}/messages",
        }
        self.headers = {"Authorization": f"Bearer {channel['page_access_token']}"}
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=15.0, headers=self.headers)
        return client

    def send(self, envelope: Envelope) -> Sent:
        url = self.urls.get(envelope.channel)
        if url is None:
            raise DeliveryError(f"a Meta channel does not send on {envelope.channel}", permanent=True)
        body = {"recipient": {"id": str(envelope.payload["to"])}, "messaging_type": "RESPONSE",
                "message": {"text": envelope.payload.get("text", "")}}  # fmt: skip
        try:
            response = self._client().post(url, json=body)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        sent = classify_response(response)
        return Sent(response.json().get("message_id"), sent.status_code)


META = register(
    ChannelType(
        name="meta",
        label="Messenger / Instagram",
        delivers=("facebook", "instagram"),
        keys=(
            ConfigKey("page_id", required=True, help="the Facebook page's id"),
            ConfigKey("instagram_account_id", help="the Instagram professional account linked to the page"),
            ConfigKey("app_secret", required=True, secret=True, help="signs webhooks (X-Hub-Signature-256)"),
            ConfigKey("verify_token", required=True, secret=True, help="answered in the hub.challenge handshake"),
            ConfigKey("page_access_token", required=True, secret=True),
            ConfigKey("api_base_url", kind="url", default="https://graph.facebook.com"),
            ConfigKey("api_version", default="v21.0"),
        ),
        routers=(router,),
        transport=MetaTransport,
        webhook_paths=("/webhooks/meta/{id}",),
    )
)
