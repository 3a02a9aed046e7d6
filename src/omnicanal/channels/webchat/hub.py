"""The open widget sockets of this process, reached through the broadcaster.

Anything for a visitor (an agent's reply delivered by the outbox, an agent typing, the visitor's own
message written from another tab) is published on the broadcaster, which is Redis pub/sub when
``OMNICANAL_REDIS_URL`` is set: whichever process holds the visitor's socket delivers it. One
subscription per process fans out to its sockets by customer and conversation, so a busy server does
not wake every socket for every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from omnicanal.realtime import Broadcaster

log = logging.getLogger(__name__)
WIDGET_MESSAGE = "widget.message"  # {"customer_id", "conversation_id", "message", "source"?}
WIDGET_TYPING = "widget.typing"  # {"conversation_id", "typing"}: an agent is typing
CUSTOMER_TYPING = "typing"  # {"conversation_id", "who": "customer", "typing"}: for the console
_QUEUE_LIMIT = 200


class Connection:
    """One visitor socket: what it should hear about, and what is waiting to be sent to it."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex  # names this socket in what it publishes, so it does not hear it back
        self.customer_id: uuid.UUID | None = None
        self.conversations: set[str] = set()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def push(self, item: dict[str, Any]) -> None:
        if self.queue.qsize() >= _QUEUE_LIMIT:  # a stalled browser loses old typing signals, not our memory
            self.queue.get_nowait()
        self.queue.put_nowait(item)


class WidgetHub:
    def __init__(self, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster
        self.connections: set[Connection] = set()
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            subscription = self.broadcaster.open(heartbeat_seconds=60.0)
            self._task = asyncio.get_running_loop().create_task(self._listen(subscription))

    async def _listen(self, subscription: Any) -> None:
        try:
            async for item in subscription:
                try:
                    self.dispatch(item)
                except Exception:
                    log.exception("could not hand a change to the widget sockets")
        finally:
            subscription.close()

    def dispatch(self, item: dict[str, Any]) -> None:
        kind = item.get("type")
        data = item.get("data")
        if not isinstance(data, dict) or not self.connections:
            return
        if kind == WIDGET_MESSAGE:
            customer = str(data.get("customer_id"))
            message = data.get("message") or {}
            source = data.get("source")
            for connection in list(self.connections):
                if str(connection.customer_id) == customer and connection.token != source:
                    connection.conversations.add(str(message.get("conversation_id")))
                    connection.push({"type": "message", "message": message})
        elif kind == WIDGET_TYPING:
            conversation = str(data.get("conversation_id"))
            for connection in list(self.connections):
                if conversation in connection.conversations:
                    connection.push({"type": "typing", "typing": bool(data.get("typing"))})

    def add(self, connection: Connection) -> None:
        self.ensure_running()
        self.connections.add(connection)

    def remove(self, connection: Connection) -> None:
        self.connections.discard(connection)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
