"""``GET /widget.js`` (the embeddable widget) and ``/ws/widget`` (its WebSocket).

Protocol (JSON text frames). The browser sends ``hello`` first::

    {"type": "hello", "device_id": "...", "identity": {"type": "email", "value": "...", "hash": "<hex>"}}
    {"type": "message", "client_id": "c-1", "text": "...", "attachments": [{"name", "content_type", "data"}]}
    {"type": "typing", "typing": true}
    {"type": "callback", "client_id": "c-2", "phone": "+34 612 345 678", "notes": "mornings"}  (call me back)

and hears ``ready`` (with the history), ``message`` (its own, acknowledged with its ``client_id``, and the
agents'), ``typing`` (an agent is typing), ``callback`` (the request is queued), ``pong`` and ``error``.
A message is acknowledged only once committed; the widget resends unacknowledged ones after a reconnection,
and the ``client_id`` makes that idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from omnicanal.channels.service import ConfiguredChannel, directory
from omnicanal.channels.webchat.hub import CUSTOMER_TYPING, WIDGET_MESSAGE, Connection, WidgetHub
from omnicanal.channels.webchat.visitors import (
    CHANNEL,
    CallbackRequest,
    Identify,
    customer_of,
    device_identity,
    history,
    identify,
    request_callbacks,
    verified_identity,
    widget_message,
)
from omnicanal.conversations.inbound import InboundInput
from omnicanal.conversations.models import Message
from omnicanal.customers.identities import InvalidIdentity, normalize
from omnicanal.db import Database, utcnow
from omnicanal.errors import DomainError, NotFound
from omnicanal.settings import Settings
from omnicanal.storage import discard_attachments, store_attachments
from omnicanal.timeline.writer import IngestWriter

log = logging.getLogger("omnicanal.channels.webchat")
router = APIRouter(tags=["web chat"])
WIDGET_JS = Path(__file__).parent / "static" / "widget.js"
MAX_TEXT = 5000
MAX_FILES = 5
RATE_MESSAGES, RATE_SECONDS = 20, 60.0  # per socket


def hub_of(app: Any) -> WidgetHub:
    hub: WidgetHub | None = getattr(app.state, "widget_hub", None)
    loop = asyncio.get_running_loop()
    if hub is None or getattr(hub, "loop", None) is not loop:
        hub = WidgetHub(app.state.broadcaster)
        hub.loop = loop  # type: ignore[attr-defined]
        app.state.widget_hub = hub
    return hub


async def webchat_channel(db: Database, raw_id: str) -> ConfiguredChannel | None:
    try:
        key = uuid.UUID(raw_id)
    except ValueError:
        return None
    found_directory = directory(db)
    hit, found = found_directory.cached(key)
    if not hit:
        found = await run_in_threadpool(found_directory.get, key)
    return found if found is not None and found.type == "webchat" else None


@router.get("/widget.js", include_in_schema=False)
def widget_script() -> Response:
    return Response(
        WIDGET_JS.read_bytes(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/widget/preview/{channel_id}", include_in_schema=False)
async def widget_preview(channel_id: str, request: Request) -> HTMLResponse:
    """A page embedding the widget of this channel, to try it (and what ``omnicanal demo`` links to)."""
    channel = await webchat_channel(request.app.state.database, channel_id)
    if channel is None:
        raise NotFound("no such web chat channel")
    title = str(channel.get("title") or channel.name).replace("<", "&lt;").replace('"', "&quot;")
    return HTMLResponse(
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title} · preview</title>
<style>body{{font-family:system-ui,sans-serif;margin:0;padding:2rem;max-width:46rem;line-height:1.5}}
header{{border-bottom:1px solid #ddd;margin-bottom:1rem}}</style></head>
<body><header><h1>{title}</h1></header>
<p>A sample page of your web site. The chat button at the bottom right is the widget, added by one tag:</p>
<pre>&lt;script src="{request.base_url}widget.js" data-channel="{channel.id}" async&gt;&lt;/script&gt;</pre>
<script src="/widget.js" data-channel="{channel.id}" async></script>
</body></html>"""
    )


class _Visitor:
    def __init__(self, channel: ConfiguredChannel, connection: Connection) -> None:
        self.channel = channel
        self.connection = connection
        self.identities: list[tuple[str, str]] = []
        self.device_id = ""
        self.conversation_id: str | None = None
        self.sent: list[float] = []

    def allow_message(self) -> bool:
        now = time.monotonic()
        self.sent = [t for t in self.sent if now - t < RATE_SECONDS]
        if len(self.sent) >= RATE_MESSAGES:
            return False
        self.sent.append(now)
        return True


def _error(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail, **extra}


async def _send_loop(websocket: WebSocket, connection: Connection) -> None:
    while True:
        item = await connection.queue.get()
        await websocket.send_text(orjson.dumps(item).decode())


@router.websocket("/ws/widget")
async def widget_socket(websocket: WebSocket, channel: str = "") -> None:
    app = websocket.app
    db: Database = app.state.database
    found = await webchat_channel(db, channel)
    if found is None:
        await websocket.close(code=4404, reason="no such web chat channel")
        return
    allowed = found.get("allowed_origins") or []
    origin = websocket.headers.get("origin", "")
    if allowed and origin not in allowed:
        log.warning("widget socket refused: channel=%s reason=origin not allowed", found.id)
        await websocket.close(code=4403, reason="this site may not use this chat")
        return
    await websocket.accept()
    hub = hub_of(app)
    connection = Connection()
    visitor = _Visitor(found, connection)
    sender = asyncio.create_task(_send_loop(websocket, connection))
    hub.add(connection)
    try:
        while True:
            raw = await websocket.receive_text()
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                connection.push(_error("bad_frame", "frames are JSON objects"))
                continue
            if not isinstance(data, dict):
                connection.push(_error("bad_frame", "frames are JSON objects"))
                continue
            await _handle(app, visitor, data)
    except WebSocketDisconnect:
        pass
    finally:
        hub.remove(connection)
        sender.cancel()


async def _handle(app: Any, visitor: _Visitor, data: dict[str, Any]) -> None:
    kind = data.get("type")
    connection = visitor.connection
    if kind == "ping":
        connection.push({"type": "pong"})
    elif kind == "hello":
        await _hello(app, visitor, data)
    elif not visitor.identities:
        connection.push(_error("hello_first", "send hello first"))
    elif kind == "message":
        await _message(app, visitor, data)
    elif kind == "callback":
        await _callback(app, visitor, data)
    elif kind == "typing":
        if visitor.conversation_id is not None:
            item = {"type": CUSTOMER_TYPING, "data": {"conversation_id": visitor.conversation_id, "who": "customer",
                                                      "typing": bool(data.get("typing"))}}  # fmt: skip
            await run_in_threadpool(app.state.broadcaster.publish, item)
    else:
        connection.push(_error("unknown_type", f"unknown frame type {kind!r}"))


async def _hello(app: Any, visitor: _Visitor, data: dict[str, Any]) -> None:
    settings: Settings = app.state.settings
    db: Database = app.state.database
    device = device_identity(data.get("device_id"), region=settings.default_region)
    if device is None:
        visitor.connection.push(_error("bad_device", "hello needs a device_id of 8 to 100 characters"))
        return
    claim = data.get("identity")
    verified = verified_identity(visitor.channel.get("identity_secret"), claim, region=settings.default_region)
    if claim and verified is None:
        log.info("widget identity not verified: channel=%s", visitor.channel.id)
    visitor.device_id = device[1]
    visitor.identities = [device, *([verified] if verified else [])]
    customer: uuid.UUID | None
    if verified is not None:
        writer: IngestWriter = app.state.ingest_writer
        (customer,) = await writer.run(
            lambda session, items: identify(session, items, settings=settings), [Identify(visitor.identities)]
        )
    else:
        customer = await run_in_threadpool(_read, db, lambda session: customer_of(session, visitor.identities))
    messages: list[dict[str, Any]] = []
    if customer is not None:
        secret = settings.secret_key
        messages = await run_in_threadpool(_read, db, lambda session: history(session, customer, secret=secret))
    visitor.connection.customer_id = customer
    visitor.connection.conversations = {m["conversation_id"] for m in messages}
    visitor.conversation_id = messages[-1]["conversation_id"] if messages else None
    visitor.connection.push(
        {
            "type": "ready",
            "verified": verified is not None,
            "identity_rejected": bool(claim) and verified is None,
            "messages": messages,
            "title": visitor.channel.get("title") or visitor.channel.name,
            "greeting": visitor.channel.get("greeting") or "",
            "max_file_bytes": settings.attachment_max_bytes,
            "file_types": settings.attachment_types,
        }
    )


async def _callback(app: Any, visitor: _Visitor, data: dict[str, Any]) -> None:
    """``{"type": "callback", "client_id", "phone", "notes"?}``: the call center's callback queue gets it."""
    settings: Settings = app.state.settings
    connection = visitor.connection
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
        connection.push(_error("bad_callback", "a callback request needs a client_id of 1 to 64 characters"))
        return
    try:
        phone = normalize("phone", str(data.get("phone") or ""), settings.default_region)
    except InvalidIdentity:
        connection.push(_error("bad_phone", "give a phone number we can call", client_id=client_id))
        return
    if not visitor.allow_message():
        connection.push(_error("slow_down", "too many requests; wait a moment", client_id=client_id))
        return
    request = CallbackRequest(
        identities=list(visitor.identities), phone=phone, notes=str(data.get("notes") or "")[:500],
        conversation_id=uuid.UUID(visitor.conversation_id) if visitor.conversation_id else None,
        source_ref=f"web:{visitor.device_id}:{client_id}"[:200],
    )  # fmt: skip
    writer: IngestWriter = app.state.ingest_writer
    await writer.run(lambda session, items: request_callbacks(session, items, settings=settings), [request])
    connection.push({"type": "callback", "client_id": client_id, "status": "requested"})


def _read(db: Database, action: Any) -> Any:
    with db.read() as session:
        return action(session)


async def _message(app: Any, visitor: _Visitor, data: dict[str, Any]) -> None:
    settings: Settings = app.state.settings
    connection = visitor.connection
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
        connection.push(_error("bad_message", "a message needs a client_id of 1 to 64 characters"))
        return
    text = data.get("text") if isinstance(data.get("text"), str) else ""
    files = data.get("attachments") or []
    if not isinstance(files, list) or len(files) > MAX_FILES:
        connection.push(_error("bad_message", f"at most {MAX_FILES} files", client_id=client_id))
        return
    if not str(text).strip() and not files:
        connection.push(_error("bad_message", "write something or attach a file", client_id=client_id))
        return
    if len(str(text)) > MAX_TEXT:
        connection.push(_error("too_long", f"at most {MAX_TEXT} characters", client_id=client_id))
        return
    if not visitor.allow_message():
        connection.push(_error("slow_down", "too many messages; wait a moment", client_id=client_id))
        return
    raw = [{"name": str(f.get("name") or "file")[:200], "content_type": str(f.get("content_type") or ""),
            "data": str(f.get("data") or "")} for f in files if isinstance(f, dict)]  # fmt: skip
    try:
        stored = await run_in_threadpool(store_attachments, raw, settings=settings) if raw else []
    except DomainError as exc:
        connection.push(_error("file_refused", exc.detail, client_id=client_id))
        return
    item = InboundInput(
        channel=CHANNEL, identities=list(visitor.identities), customer_id=None, text=str(text), attachments=stored,
        external_id=f"{visitor.device_id}:{client_id}"[:200], occurred_at=utcnow(),
        channel_instance_id=visitor.channel.id,
    )  # fmt: skip
    writer: IngestWriter = app.state.ingest_writer
    try:
        (result,) = await writer.run(app.state.receive_messages, [item])
    except Exception:
        discard_attachments(stored, settings=settings)
        log.exception("could not store a web chat message")
        connection.push(_error("unavailable", "not sent; it will be retried", client_id=client_id))
        return
    if result.error is not None or result.duplicate:
        discard_attachments(stored, settings=settings)
    if result.error is not None:
        connection.push(_error("refused", result.error.detail, client_id=client_id))
        return
    message = await run_in_threadpool(
        _read,
        app.state.database,
        lambda session: widget_message(session.get(Message, result.message_id), secret=settings.secret_key),
    )
    connection.customer_id = result.customer_id
    visitor.conversation_id = str(result.conversation_id)
    connection.conversations.add(visitor.conversation_id)
    connection.push({"type": "message", "message": message, "client_id": client_id})
    # the visitor's other tabs and devices
    await run_in_threadpool(
        app.state.broadcaster.publish,
        {"type": WIDGET_MESSAGE, "data": {"customer_id": str(result.customer_id), "source": connection.token,
                                          "conversation_id": visitor.conversation_id, "message": message}},
    )  # fmt: skip
