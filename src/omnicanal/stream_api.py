"""Server-sent events: committed changes, as they happen, for integrations and consoles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.realtime import Broadcaster
from omnicanal.web import require

router = APIRouter(prefix="/api/v1", tags=["real time"])


async def sse(request: Request, broadcaster: Broadcaster, *, types: set[str] | None = None) -> AsyncIterator[bytes]:
    # Subscribe before saying "connected": a client that acts on it must not miss the change it causes.
    subscription = broadcaster.open(heartbeat_seconds=15.0)
    try:
        yield b": connected\n\n"
        async for item in subscription:
            if await request.is_disconnected():
                break
            kind = str(item.get("type", "message"))
            if kind == "ping":
                yield b": ping\n\n"
                continue
            if types and kind not in types and kind.split(".")[0] not in types:
                continue
            yield b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(item) + b"\n\n"
    finally:
        subscription.close()


def event_stream(request: Request, types: set[str] | None = None) -> StreamingResponse:
    broadcaster: Any = request.app.state.broadcaster
    return StreamingResponse(
        sse(request, broadcaster, types=types),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/stream")
async def stream(
    request: Request, _: Annotated[Principal, Depends(require(Permission.CONVERSATIONS_READ))], types: str | None = None
) -> StreamingResponse:
    """``text/event-stream`` of ``message.*`` and ``conversation.*`` changes.

    Filter with ``?types=message,conversation.assigned`` (a prefix or exact types)."""
    wanted = {t.strip() for t in types.split(",") if t.strip()} if types else None
    return event_stream(request, wanted)
