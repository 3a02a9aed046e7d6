"""The web chat channel type: its settings, its widget routes, and the transport that reaches open widgets."""

from __future__ import annotations

import uuid

from omnicanal.channels.registry import ChannelType, ConfigKey, register
from omnicanal.channels.service import ConfiguredChannel
from omnicanal.channels.webchat.api import router
from omnicanal.channels.webchat.files import router as files_router
from omnicanal.channels.webchat.hub import WIDGET_MESSAGE
from omnicanal.channels.webchat.visitors import widget_message
from omnicanal.conversations.models import Message
from omnicanal.db import Database
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent
from omnicanal.realtime import runtime_of


class WidgetTransport:
    """Hands a reply to the broadcaster; the process holding the visitor's socket pushes it.

    A visitor who is not connected reads it in the history when the widget opens again.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    def send(self, envelope: Envelope) -> Sent:
        runtime = runtime_of(self.database.write_engine)
        if runtime is None:
            raise DeliveryError("no real-time broadcaster in this process")
        message_id = uuid.UUID(str(envelope.payload["message_id"]))
        with self.database.read() as session:
            message = session.get(Message, message_id)
            if message is None:
                raise DeliveryError(f"message {message_id} is gone", permanent=True)
            data = {"customer_id": str(message.customer_id), "conversation_id": str(message.conversation_id),
                    "message": widget_message(message, secret=self.database.settings.secret_key)}  # fmt: skip
        runtime.broadcaster.publish({"type": WIDGET_MESSAGE, "data": data})
        return Sent(provider_id=f"web-{envelope.id}", detail="pushed to the visitor's open widgets")


def _transport(channel: ConfiguredChannel, database: Database) -> WidgetTransport:
    return WidgetTransport(database)


WEBCHAT = register(
    ChannelType(
        name="webchat",
        label="Web chat",
        delivers=("web",),
        keys=(
            ConfigKey("title", help="shown at the top of the chat window"),
            ConfigKey("greeting", help="the first line a visitor reads"),
            ConfigKey(
                "identity_secret",
                secret=True,
                help="HMAC-SHA256 key your site signs its logged-in users' identifiers with",
            ),
            ConfigKey(
                "allowed_origins",
                kind="list",
                help="sites that may embed the widget, e.g. https://shop.example; empty: any",
            ),
        ),
        routers=(router, files_router),
        transport=_transport,
        webhook_paths=("/widget.js", "/ws/widget?channel={id}"),
    )
)
