"""Files in the web chat: the visitor opens them through signed, expiring links.

The widget runs on the company's site, another origin, without a login: a file's link carries its own
proof, an HMAC (keyed by ``OMNICANAL_SECRET_KEY``) of the message, the file's position and an expiry.
The links are made afresh each time the widget receives a message or its history, so a visitor who
keeps the chat open or comes back gets working links; a link copied elsewhere stops working after a day.
Only files of web chat messages that are not private notes are ever served.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from omnicanal.conversations.models import Message
from omnicanal.db import Database
from omnicanal.errors import NotFound
from omnicanal.storage import file_headers, stored_file

LINK_SECONDS = 24 * 3600
CHANNEL = "web"
router = APIRouter(include_in_schema=False)


def _signature(secret: str, message_id: uuid.UUID, index: int, expires: int) -> str:
    digest = hmac.new(secret.encode(), f"widget-file:{message_id}:{index}:{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:18]).decode()


def file_link(secret: str, message_id: uuid.UUID, index: int, *, now: float | None = None) -> str:
    """The path (on this server) where the visitor downloads the message's ``index``-th file."""
    expires = int((now if now is not None else time.time()) + LINK_SECONDS)
    return f"/widget/files/{message_id}/{index}?e={expires}&s={_signature(secret, message_id, index, expires)}"


def link_is_valid(secret: str, message_id: uuid.UUID, index: int, expires: str, signature: str) -> bool:
    try:
        until = int(expires)
    except ValueError:
        return False
    expected = _signature(secret, message_id, index, until)
    return hmac.compare_digest(expected.encode(), signature.encode()) and until >= time.time()


def file_links(secret: str, message: Message) -> list[str | None]:
    """Where the visitor opens each of the message's files: a signed link, the file's own address, or nothing."""
    links: list[str | None] = []
    for index, attachment in enumerate(message.attachments or []):
        if attachment.get("key"):
            links.append(file_link(secret, message.id, index))
        elif str(attachment.get("url") or "").startswith(("https://", "http://")):
            links.append(str(attachment["url"]))
        else:
            links.append(None)
    return links


def _load(database: Database, message_id: uuid.UUID, index: int) -> tuple[dict[str, Any], bytes] | None:
    with database.read() as session:
        message = session.get(Message, message_id)
        if message is None or message.channel != CHANNEL or message.private:
            return None
        files = message.attachments or []
        if not 0 <= index < len(files) or not files[index].get("key"):
            return None
        attachment = dict(files[index])
    data = stored_file(database.settings, attachment)
    return None if data is None else (attachment, data)


@router.get("/widget/files/{message_id}/{index}")
async def widget_file(message_id: uuid.UUID, index: int, request: Request, e: str = "", s: str = "") -> Response:
    """A file of the web chat, for the visitor holding a signed link to it."""
    database: Database = request.app.state.database
    if not link_is_valid(database.settings.secret_key, message_id, index, e, s):
        raise NotFound("no such file, or the link has expired")
    found = await run_in_threadpool(_load, database, message_id, index)
    if found is None:
        raise NotFound("no such file, or the link has expired")
    attachment, data = found
    headers = file_headers(str(attachment.get("name") or "file"), disposition="attachment")
    # the file is opened from the company's site, whatever its origin; it reveals nothing without the link
    headers["Access-Control-Allow-Origin"] = "*"
    return Response(data, media_type=str(attachment.get("content_type") or "application/octet-stream"), headers=headers)
