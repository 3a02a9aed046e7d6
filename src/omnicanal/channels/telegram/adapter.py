"""The Telegram channel: ``/webhooks/telegram/{channel_id}`` in, ``sendMessage`` out."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.channels.inbound import configured, in_writer, raw_body, rejected, same, store
from omnicanal.channels.media import attach_file, fetch_list, queue_fetches
from omnicanal.channels.registry import ChannelType, ConfigKey, register
from omnicanal.channels.service import ConfiguredChannel, get_instance
from omnicanal.channels.telegram.links import make_token, read_token
from omnicanal.conversations.inbound import InboundInput
from omnicanal.conversations.service import edit_received
from omnicanal.customers.service import get_customer
from omnicanal.db import Database, utcnow
from omnicanal.errors import ValidationFailed
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent, classify_response
from omnicanal.settings import Settings
from omnicanal.web import AppSettings, ReadSession, require

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
links_router = APIRouter(prefix="/api/v1", tags=["channels"])
_OK = Response(status_code=200)


@router.post("/webhooks/telegram/{channel_id}", summary="Telegram Bot API updates")
async def incoming(channel_id: str, request: Request) -> Response:
    channel = await configured(request, channel_id, "telegram")
    given = request.headers.get("x-telegram-bot-api-secret-token")
    if not given:
        raise rejected(channel, "no X-Telegram-Bot-Api-Secret-Token", status=401)
    if not same(channel["secret_token"], given):
        raise rejected(channel, "bad X-Telegram-Bot-Api-Secret-Token")
    try:
        update = orjson.loads(await raw_body(request))
    except orjson.JSONDecodeError:
        return _OK
    message = update.get("message") or update.get("edited_message") if isinstance(update, dict) else None
    if not isinstance(message, dict):
        return _OK  # callback queries, channel posts, ...: nothing to store
    item = _inbound(message, channel, request.app.state.settings)
    if item is not None and "edited_message" in update:
        (edited,) = await in_writer(request, _apply_edits, [item])
        if edited:
            return _OK
    if item is not None:
        results = await store(request, [item])
        fetch = fetch_list([item], results, "file_id")
        if fetch:  # photos and documents are downloaded after the answer, by the outbox worker
            await in_writer(request, queue_fetches, fetch)
    return _OK


def _apply_edits(session: Session, items: Sequence[InboundInput]) -> list[bool]:
    """A message the customer edited takes its new text; False where it was never stored (it is stored now)."""
    return [
        edit_received(session, channel=item.channel, external_id=item.external_id, text=item.text) is not None
        for item in items
    ]


def _inbound(message: dict[str, Any], channel: ConfiguredChannel, settings: Settings) -> InboundInput | None:
    sender, chat = message.get("from") or {}, message.get("chat") or {}
    if not sender.get("id") or sender.get("is_bot") or chat.get("type") != "private":
        return None
    text = str(message.get("text") or message.get("caption") or "")
    customer_id = None
    if text.startswith("/start"):
        _, _, token = text.partition(" ")
        if token.strip():
            customer_id = read_token(settings.secret_key, channel.id, token.strip())
            if customer_id is None:
                log.warning("webhook rejected: type=telegram channel=%s reason=bad /start link token", channel.id)
        text = "/start"
    attachments: list[dict[str, Any]] = []
    photos = message.get("photo") or []
    if photos:
        largest = max(photos, key=lambda p: p.get("width", 0) * p.get("height", 0))
        photo = {"name": "photo.jpg", "provider": "telegram", "kind": "photo", "file_id": largest.get("file_id")}
        attachments.append(photo | {"width": largest.get("width"), "height": largest.get("height")})
    document = message.get("document")
    if isinstance(document, dict):
        attachments.append(
            {
                "name": document.get("file_name") or "document",
                "provider": "telegram",
                "kind": "document",
                "file_id": document.get("file_id"),
                "filename": document.get("file_name"),
                "content_type": document.get("mime_type"),
            }
        )
    if not text and not attachments:
        return None
    try:
        occurred_at = min(datetime.fromtimestamp(int(message["date"]), UTC), utcnow())
    except (KeyError, ValueError, OverflowError):
        occurred_at = utcnow()
    # message ids count per chat, and a user has one private chat with each bot (whose id is the user's):
    # the bot's id (its token's first part) tells two bots' "message 1" apart
    bot_id = str(channel["bot_token"]).partition(":")[0]
    return InboundInput(
        channel="telegram", identities=[("telegram", str(sender["id"]))], customer_id=customer_id, text=text,
        attachments=attachments, external_id=f"{bot_id}:{chat['id']}:{message.get('message_id')}",
        occurred_at=occurred_at, channel_instance_id=channel.id,
    )  # fmt: skip


class LinkOut(BaseModel):
    token: str
    url: str | None


@links_router.get("/channels/{channel_id}/telegram-link", response_model=LinkOut)
def telegram_link(
    channel_id: uuid.UUID, customer_id: uuid.UUID, session: ReadSession, settings: AppSettings,
    _: Annotated[Principal, Depends(require(Permission.CUSTOMERS_WRITE))],
) -> LinkOut:  # fmt: skip
    """A ``t.me`` deep link that links whoever opens it in Telegram to this customer (valid 7 days)."""
    row = get_instance(session, channel_id)
    if row.type != "telegram":
        raise ValidationFailed.on_field("channel_id", "is not a Telegram channel")
    customer = get_customer(session, customer_id, follow_merges=True)
    token = make_token(settings.secret_key, row.id, customer.id)
    username = (row.config or {}).get("bot_username")
    return LinkOut(token=token, url=f"https://t.me/{username}?start={token}" if username else None)


class TelegramTransport:
    """``POST {api_base_url}/bot{bot_token}/sendMessage``."""

    def __init__(self, channel: ConfiguredChannel, database: Database) -> None:
        self.url = f"{channel['api_base_url']}/bot{channel['bot_token']}/sendMessage"
        self.get_file = f"{channel['api_base_url']}/bot{channel['bot_token']}/getFile"
        self.files = f"{channel['api_base_url']}/file/bot{channel['bot_token']}"
        self.database = database
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=15.0)
        return client

    def fetch_media(self, envelope: Envelope) -> Sent:
        """``getFile`` for the file's path, then ``/file/bot<token>/<path>``, into the attachment store."""
        payload, limit = envelope.payload, self.database.settings.attachment_max_bytes
        try:
            info = self._client().post(self.get_file, json={"file_id": payload["file_id"]})
            if info.status_code != 200:
                raise DeliveryError(f"getFile answered {info.status_code}", permanent=400 <= info.status_code < 500)
            found = info.json().get("result") or {}
            if int(found.get("file_size") or 0) > limit:
                raise DeliveryError("the file is larger than OMNICANAL_ATTACHMENT_MAX_BYTES", permanent=True)
            download = self._client().get(f"{self.files}/{found['file_path']}")
        except (httpx.HTTPError, KeyError) as exc:
            raise DeliveryError(type(exc).__name__) from None  # the URLs hold the bot token: never log them
        if download.status_code != 200 or len(download.content) > limit:
            raise DeliveryError(f"the file could not be fetched ({download.status_code})", permanent=True)
        content_type = download.headers.get("content-type", "application/octet-stream")
        if content_type == "application/octet-stream" and str(found.get("file_path", "")).endswith(".jpg"):
            content_type = "image/jpeg"
        attach_file(self.database, payload, download.content, content_type)
        return Sent(str(payload["file_id"]))

    def send(self, envelope: Envelope) -> Sent:
        if envelope.kind == "media":
            return self.fetch_media(envelope)
        chat_id = str(envelope.payload["to"])
        try:
            response = self._client().post(
                self.url, json={"chat_id": chat_id, "text": envelope.payload.get("text", "")}
            )
        except httpx.HTTPError as exc:
            # the bot token is in the URL: never let it reach a log or the outbox's last error
            raise DeliveryError(type(exc).__name__) from None
        if response.status_code == 429:
            raise DeliveryError("HTTP 429: too many requests", status_code=429)
        sent = classify_response(response)
        result = response.json().get("result") or {}
        return Sent(f"{chat_id}:{result.get('message_id')}", sent.status_code)


TELEGRAM = register(
    ChannelType(
        name="telegram",
        label="Telegram",
        delivers=("telegram",),
        keys=(
            ConfigKey("bot_token", required=True, secret=True, help="from @BotFather"),
            ConfigKey("secret_token", required=True, secret=True, help="sent back in X-Telegram-Bot-Api-Secret-Token"),
            ConfigKey("bot_username", help="for t.me deep links"),
            ConfigKey("api_base_url", kind="url", default="https://api.telegram.org"),
        ),
        routers=(router, links_router),
        transport=TelegramTransport,
        webhook_paths=("/webhooks/telegram/{id}",),
    )
)
