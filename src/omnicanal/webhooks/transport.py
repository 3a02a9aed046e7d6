"""Sending one webhook delivery, signed as the Standard Webhooks spec says.

Headers: ``webhook-id`` (the outbox item id: the same on every retry, so receivers can drop repeats),
``webhook-timestamp`` (this attempt's time, in Unix seconds, so receivers can refuse stale replays) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, one per live secret).
The URL and secrets are read at send time: a retry goes to the endpoint as it is now configured.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import uuid
from math import floor
from urllib.parse import urlsplit

import httpx
import orjson
from standardwebhooks import Webhook

from omnicanal import __version__
from omnicanal.db import Database, utcnow
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent, classify_response
from omnicanal.webhooks.events import TEST_EVENT
from omnicanal.webhooks.service import signing_target


def body_of(payload: dict[str, object]) -> bytes:
    return orjson.dumps({"type": payload["type"], "timestamp": payload["timestamp"], "data": payload["data"]})


class WebhookTransport:
    def __init__(self, database: Database, *, timeout: float = 10.0) -> None:
        self.database = database
        self._timeout = timeout
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            # no redirects: a 3xx is an answer to classify, not an invitation to post elsewhere
            client = httpx.Client(timeout=self._timeout, follow_redirects=False)
            self._local.client = client
        return client

    def _private_targets_allowed(self) -> bool:
        settings = self.database.settings
        if settings.webhooks_allow_private_targets is not None:
            return settings.webhooks_allow_private_targets
        return settings.environment != "production"

    def send(self, envelope: Envelope) -> Sent:
        payload = envelope.payload
        try:
            subscription_id = uuid.UUID(str(payload["subscription_id"]))
            event_type = str(payload["type"])
        except (KeyError, ValueError):
            raise DeliveryError("not a webhook delivery (no subscription_id or type)", permanent=True) from None
        now = utcnow()
        with self.database.read() as session:
            target = signing_target(session, subscription_id, now=now)
        if target is None:
            raise DeliveryError("the subscription was deleted", permanent=True)
        if not target.active and event_type != TEST_EVENT:
            raise DeliveryError("the subscription is disabled", permanent=True)
        if not self._private_targets_allowed():
            refusal = private_address_refusal(target.url)
            if refusal:
                raise DeliveryError(refusal, permanent=True)
        body = body_of(payload)
        text = body.decode()
        signature = " ".join(Webhook(secret).sign(envelope.id, now, text) for secret in target.secrets)
        headers = {
            "content-type": "application/json",
            "user-agent": f"omnicanal-webhooks/{__version__}",
            "webhook-id": envelope.id,
            "webhook-timestamp": str(floor(now.timestamp())),
            "webhook-signature": signature,
        }
        try:
            response = self._client().post(target.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        sent = classify_response(response)
        return Sent(provider_id=None, status_code=sent.status_code, detail=sent.detail)


def private_address_refusal(url: str) -> str | None:
    """Why a URL must not be called from inside our network (it resolves to a private address)."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved:
            return f"refused: {host} resolves to the internal address {ip}"
    return None
