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

from omnicanal.channels.inbound import StatusUpdate, configured, in_writer, store, store_statuses
from omnicanal.channels.media import fetch_into_store, fetch_list, queue_fetches
from omnicanal.channels.meta.signing import handshake, verified_body
from omnicanal.channels.registry import ChannelType, ConfigKey, register
from omnicanal.channels.service import ConfiguredChannel
from omnicanal.conversations.inbound import InboundInput
from omnicanal.db import Database, utcnow
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent, classify_response

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
CHANNEL_OF = {"page": "facebook", "instagram": "instagram"}
FETCHED_KINDS = ("image", "video", "audio", "file")  # stickers are images; not shared links nor locations


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
    results = await store(request, items)
    await store_statuses(request, statuses)
    fetch = fetch_list(items, results, "media_url")
    if fetch:  # Meta's attachment URLs expire: the files are copied into the store after the answer
        await in_writer(request, queue_fetches, fetch)
    return Response(status_code=200)


def _inbound(event: dict[str, Any], conversation_channel: str, channel: ConfiguredChannel) -> InboundInput | None:
    message = event.get("message")
    sender = (event.get("sender") or {}).get("id")
    if not isinstance(message, dict) or not sender or message.get("is_echo") or not message.get("mid"):
        return None
    attachments = []
    for given in message.get("attachments") or ():
        url = (given.get("payload") or {}).get("url")
        attachment = {"provider": conversation_channel, "kind": given.get("type"), "url": url}
        if url and given.get("type") in FETCHED_KINDS:
            attachment["media_url"] = url
        attachments.append(attachment)
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
        self.database = database
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=15.0, headers=self.headers)
        return client

    def fetch_media(self, envelope: Envelope) -> Sent:
        """A file the customer sent, from its CDN URL into the attachment store (the URL expires). The page's
        token is not sent: the URL carries its own signature."""
        fetch_into_store(self.database, envelope.payload, self._plain())
        return Sent(None)

    def _plain(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "plain", None)
        if client is None:
            client = self._local.plain = httpx.Client(timeout=30.0)
        return client

    def send(self, envelope: Envelope) -> Sent:
        if envelope.kind == "media":
            return self.fetch_media(envelope)
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
