"""The SMS channel: ``/webhooks/sms/{channel_id}`` (messages) and ``/webhooks/sms/{channel_id}/status``."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from omnicanal.channels import twilio
from omnicanal.channels.inbound import StatusUpdate, configured, in_writer, rejected, same, store, store_statuses
from omnicanal.channels.media import fetch_into_store, fetch_list, queue_fetches
from omnicanal.channels.registry import ChannelType, ConfigKey, register
from omnicanal.channels.service import ConfiguredChannel
from omnicanal.channels.sms.segments import segments
from omnicanal.consent.models import ConsentChange
from omnicanal.consent.schemas import ConsentIn, ConsentStatus
from omnicanal.consent.service import set_consent
from omnicanal.conversations.inbound import InboundInput
from omnicanal.conversations.service import reply
from omnicanal.customers.identities import InvalidIdentity, normalize
from omnicanal.db import Database, utcnow
from omnicanal.errors import DomainError
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent, classify_response
from omnicanal.settings import Settings
from omnicanal.storage import type_allowed

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "BAJA"})
START_WORDS = frozenset({"START", "YES", "UNSTOP", "ALTA"})
HELP_WORDS = frozenset({"HELP", "INFO", "AYUDA"})
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# Twilio's MessageStatus -> ours (queued/accepted/sending say nothing new)
STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "undelivered": "failed", "failed": "failed"}


def keyword(text: str) -> str | None:
    word = text.strip().upper().rstrip(".!")
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return None


async def verified_form(request: Request, channel: ConfiguredChannel) -> dict[str, str]:
    """The form parameters, after checking ``X-Twilio-Signature`` against the raw body."""
    given = request.headers.get("x-twilio-signature")
    if not given:
        raise rejected(channel, "no X-Twilio-Signature", status=401)
    form = await request.form()
    params = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
    expected = twilio.signature(channel["auth_token"], twilio.public_url(request, channel.get("public_url")), params)
    if not same(expected, given):
        raise rejected(channel, "bad X-Twilio-Signature")
    if form.get("AccountSid") not in (None, channel["account_sid"]):
        raise rejected(channel, "another account")
    return dict(params)


def _media(form: dict[str, str], settings: Settings) -> list[dict[str, Any]]:
    """An MMS's media: each keeps the provider's URL; those of an accepted type are also fetched into the store."""
    media = []
    for n in range(int(form.get("NumMedia", "0") or 0)):
        url = form.get(f"MediaUrl{n}")
        if not url:
            continue
        content_type = form.get(f"MediaContentType{n}", "")
        attachment = {"url": url, "content_type": content_type, "provider": "sms"}
        if type_allowed(content_type.split(";")[0].strip(), settings.attachment_types):
            attachment["media_url"] = url
        media.append(attachment)
    return media


def _twiml() -> Response:
    return Response(TWIML_EMPTY, media_type="application/xml")


@router.post("/webhooks/sms/{channel_id}", summary="Incoming SMS (Twilio-compatible)")
async def incoming(channel_id: str, request: Request) -> Response:
    channel = await configured(request, channel_id, "sms")
    form = await verified_form(request, channel)
    settings: Settings = request.app.state.settings
    sid = form.get("MessageSid") or form.get("SmsSid")
    sender = form.get("From", "")
    if not sid or not sender:
        return _twiml()  # nothing we can store; answering 2xx stops the provider retrying it
    try:
        phone = normalize("phone", sender, settings.default_region)
    except InvalidIdentity:
        log.info("sms %s from an address that is not a phone number; ignored", channel.id)
        return _twiml()
    attachments = _media(form, settings)
    text = form.get("Body", "")
    item = InboundInput(
        channel="sms", identities=[("phone", phone)], customer_id=None, text=text, attachments=attachments,
        external_id=sid, occurred_at=utcnow(), channel_instance_id=channel.id,
    )  # fmt: skip
    (result,) = await store(request, [item])
    fetch = fetch_list([item], [result], "media_url")
    if fetch:  # MMS media are downloaded after the answer, by the outbox worker (the provider's copy can be deleted)
        await in_writer(request, queue_fetches, fetch)
    word = keyword(text)
    # A provider's retry is acted on only if the first delivery was not (the keyword is applied after the message
    # is stored): HELP answered twice, or a late retry of STOP undoing a later START, would be wrong.
    if word is not None and result.customer_id is not None and not (result.duplicate and word == "help"):
        await in_writer(request, _apply_keywords, [(word, result.customer_id, result.conversation_id, sid, channel)])
    return _twiml()


def _apply_keywords(session: Session, items: Sequence[tuple[str, uuid.UUID, uuid.UUID, str, Any]]) -> list[None]:
    """STOP / START change SMS marketing consent (idempotent: a provider retry changes nothing); HELP answers."""
    for word, customer_id, conversation_id, sid, channel in items:
        try:
            if word in ("stop", "start"):
                wanted = ConsentStatus.WITHDRAWN if word == "stop" else ConsentStatus.GRANTED
                proof = f"SMS keyword {word.upper()} ({sid})"
                latest = session.query(ConsentChange).filter_by(customer_id=customer_id, channel="sms",
                                                                purpose="marketing")  # fmt: skip
                if latest.filter_by(proof=proof).first() is not None:
                    continue  # this very message was applied already: a retry changes nothing
                current = latest.order_by(ConsentChange.changed_at.desc(), ConsentChange.id.desc()).first()
                if current is None or current.status != wanted.value:
                    set_consent(
                        session, customer_id=customer_id, channel="sms", purpose="marketing",
                        change=ConsentIn(status=wanted, source="sms", proof=proof), actor=f"channel:{channel.id}",
                    )  # fmt: skip
            elif word == "help" and channel.get("help_text"):
                reply(
                    session, conversation_id=conversation_id, text=channel["help_text"], channel="sms", private=False,
                    author_type="bot", author_id="sms-help",
                )  # fmt: skip
        except DomainError as exc:
            log.info("sms keyword %s not applied: %s", word, exc.slug)
    return [None for _ in items]


@router.post("/webhooks/sms/{channel_id}/status", summary="SMS delivery status callback (Twilio-compatible)")
async def status_callback(channel_id: str, request: Request) -> Response:
    channel = await configured(request, channel_id, "sms")
    form = await verified_form(request, channel)
    sid, status = form.get("MessageSid"), STATUSES.get(form.get("MessageStatus", ""))
    if sid and status:
        reason = f"error {form['ErrorCode']}" if form.get("ErrorCode") else None
        await store_statuses(request, [StatusUpdate(sid, status, reason)])
    return Response(status_code=204)


class SmsTransport:
    """``POST {api_base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with basic auth."""

    def __init__(self, channel: ConfiguredChannel, database: Database) -> None:
        self.channel = channel
        base = channel["api_base_url"]
        self.url = f"{base}/2010-04-01/Accounts/{channel['account_sid']}/Messages.json"
        self.auth = (channel["account_sid"], channel["auth_token"])
        self.database = database
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=15.0)
        return client

    def fetch_media(self, envelope: Envelope) -> Sent:
        """An MMS's media URL into the attachment store: with the account's credentials on the provider's own host
        (Twilio answers with a redirect to a short-lived copy, fetched without them), never elsewhere."""
        url = str(envelope.payload["file_id"])
        own = urlsplit(url)[:2] == urlsplit(self.channel["api_base_url"])[:2]
        fetch_into_store(self.database, envelope.payload, self._client(), auth=self.auth if own else None)
        return Sent(url.rsplit("/", 1)[-1])

    def send(self, envelope: Envelope) -> Sent:
        if envelope.kind == "media":
            return self.fetch_media(envelope)
        payload = envelope.payload
        text = payload.get("text", "")
        form = {"To": payload["to"], "Body": text}
        if self.channel.get("messaging_service_sid"):
            form["MessagingServiceSid"] = self.channel["messaging_service_sid"]
        else:
            form["From"] = self.channel["from_number"]
        if self.channel.get("public_url"):
            form["StatusCallback"] = f"{self.channel['public_url']}/webhooks/sms/{self.channel.id}/status"
        try:
            response = self._client().post(
                self.url, data=form, headers={"I-Twilio-Idempotency-Token": envelope.id}, auth=self.auth
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        sent = classify_response(response)
        return Sent(sent.provider_id, sent.status_code, f"{segments(text)} segment(s)")


def _check(values: dict[str, Any]) -> None:
    from omnicanal.errors import ValidationFailed

    if not values.get("from_number") and not values.get("messaging_service_sid"):
        raise ValidationFailed.on_field("config.from_number", "give from_number or messaging_service_sid")


SMS = register(
    ChannelType(
        name="sms",
        label="SMS",
        delivers=("sms",),
        keys=(
            ConfigKey("account_sid", required=True, help="Account SID (AC...)"),
            ConfigKey("auth_token", required=True, secret=True, help="signs webhooks and authenticates sends"),
            ConfigKey("from_number", kind="phone", help="the sending number, E.164"),
            ConfigKey("messaging_service_sid"),
            ConfigKey("public_url", kind="url", help="this server's public base URL, as the provider calls it"),
            ConfigKey("api_base_url", kind="url", default="https://api.twilio.com"),
            ConfigKey("help_text", help="the answer to HELP"),
        ),
        routers=(router,),
        transport=SmsTransport,
        check=_check,
        webhook_paths=("/webhooks/sms/{id}", "/webhooks/sms/{id}/status"),
    )
)
