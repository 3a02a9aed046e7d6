"""Outbox items leave through the channel instance of their conversation.

A reply's payload names the instance the customer wrote on (``channel_instance_id``); without one,
the oldest enabled instance of a type that delivers the channel is used; without any configured
instance, the transport from ``OMNICANAL_CHANNEL_ENDPOINTS`` (log / HTTP) as before.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime

from omnicanal.channels.registry import TYPES
from omnicanal.channels.service import ChannelDirectory, ConfiguredChannel, directory
from omnicanal.db import Database
from omnicanal.outbox.transports import DeliveryError, Envelope, Sent, Transport, TransportRegistry

log = logging.getLogger(__name__)


class InstanceTransport:
    def __init__(self, database: Database, conversation_channel: str, fallback: Transport) -> None:
        self.database = database
        self.channel = conversation_channel
        self.fallback = fallback
        self.directory: ChannelDirectory = directory(database)
        self._built: dict[tuple[uuid.UUID, datetime], Transport] = {}
        self._lock = threading.Lock()

    def _instance(self, envelope: Envelope) -> ConfiguredChannel | None:
        raw = envelope.payload.get("channel_instance_id")
        if raw:
            try:
                found = self.directory.get(uuid.UUID(str(raw)))
            except ValueError:
                found = None
            kind = TYPES.get(found.type) if found is not None else None
            if kind is not None and kind.transport is not None and self.channel in kind.delivers:
                return found
            # deleted or disabled since the customer wrote, or inbound only (the app's API channel
            # takes messages in; push notifications carry the replies): the default for the channel
            log.debug("channel %s does not send %s; using the default", raw, self.channel)
        return self.directory.default_for(self.channel)

    def transport_for(self, channel: ConfiguredChannel) -> Transport:
        key = (channel.id, channel.updated_at)
        with self._lock:
            built = self._built.get(key)
            if built is None:
                factory = TYPES[channel.type].transport
                if factory is None:
                    raise DeliveryError(f"channel type {channel.type} sends nothing", permanent=True)
                built = self._built[key] = factory(channel, self.database)
            return built

    def send(self, envelope: Envelope) -> Sent:
        channel = self._instance(envelope)
        if channel is None:
            return self.fallback.send(envelope)
        return self.transport_for(channel).send(envelope)


def install_transports(registry: TransportRegistry, database: Database) -> None:
    """Every conversation channel some adapter delivers goes through its configured instances first."""
    channels = {name for kind in TYPES.values() if kind.transport is not None for name in kind.delivers}
    for name in sorted(channels):
        registry.register(name, InstanceTransport(database, name, registry.for_channel(name)))
