"""Replies on the ``app`` channel reach the customer's phone as push notifications.

FCM HTTP v1: ``POST {api_base_url}/v1/projects/{project_id}/messages:send`` with an OAuth bearer
token, ``{"message": {"token": ..., "notification": {"title", "body"}, "data": {...}}}``; the answer's
``name`` is the provider message id. The device's token is the one its app registered through its
API channel (``push_tokens``), found by the customer's ``device_id`` identity. A token the provider
no longer knows (404 / UNREGISTERED) is forgotten and the delivery given up.
"""

from __future__ import annotations

import threading

import httpx
from sqlalchemy import delete, select

from omnicanal.channels.models import PushDevice
from omnicanal.channels.registry import ChannelType, ConfigKey, register
from omnicanal.channels.service import ConfiguredChannel
from omnicanal.db import Database
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent, classify_response


class PushTransport:
    def __init__(self, channel: ConfiguredChannel, database: Database) -> None:
        self.channel = channel
        self.database = database
        self.url = f"{channel['api_base_url']}/v1/projects/{channel['project_id']}/messages:send"
        self.headers = {"Authorization": f"Bearer {channel['access_token']}"}
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=15.0, headers=self.headers)
        return client

    def send(self, envelope: Envelope) -> Sent:
        device_id = str(envelope.payload["to"])
        with self.database.read() as session:
            token = session.scalar(select(PushDevice.token).where(PushDevice.device_id == device_id))
        if token is None:
            raise DeliveryError("the device has registered no push token", permanent=True)
        message = {
            "token": token,
            "notification": {"title": self.channel.get("title", ""), "body": envelope.payload.get("text", "")},
            "data": {k: str(envelope.payload[k]) for k in ("conversation_id", "message_id") if envelope.payload.get(k)},
        }
        try:
            response = self._client().post(self.url, json={"message": message})
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if response.status_code == 404 or "UNREGISTERED" in response.text[:2000]:
            with self.database.write() as session:
                session.execute(delete(PushDevice).where(PushDevice.device_id == device_id, PushDevice.token == token))
            raise DeliveryError("the push token is no longer registered", permanent=True, status_code=404)
        sent = classify_response(response)
        return Sent(response.json().get("name"), sent.status_code)


PUSH = register(
    ChannelType(
        name="push",
        label="Push notifications",
        delivers=("app",),
        keys=(
            ConfigKey("project_id", required=True),
            ConfigKey("access_token", required=True, secret=True, help="OAuth 2 bearer token for the provider"),
            ConfigKey("title", default="", help="the notification title"),
            ConfigKey("api_base_url", kind="url", default="https://fcm.googleapis.com"),
        ),
        transport=PushTransport,
    )
)
