"""The agent's inbox (mine / unassigned / team / all) and the console's live stream of changes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from omnicanal.access.models import StaffUser
from omnicanal.access.roles import Permission
from omnicanal.console.context import Console, StaffConsole
from omnicanal.console.routes import problem_text
from omnicanal.conversations.channels import CHANNEL_RULES
from omnicanal.conversations.inbox import list_conversations
from omnicanal.conversations.schemas import ConversationOut
from omnicanal.conversations.service import STATUSES
from omnicanal.errors import DomainError
from omnicanal.routing.models import Team, TeamMember

router = APIRouter(prefix="/console", include_in_schema=False)

INBOX_PAGE_SIZE = 30
VIEWS = ("mine", "unassigned", "team", "all")
# what the console's pages refresh on; anything else on the broadcaster is not sent to browsers
LIVE_TOPICS = ("message", "note", "conversation", "call", "typing")


def staff_names(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = session.execute(select(StaffUser.id, StaffUser.display_name, StaffUser.email).where(StaffUser.id.in_(ids)))
    return {user_id: name or email for user_id, name, email in rows}


def visible_teams(console: Console, session: Session) -> list[Team]:
    """The teams the team view offers: the user's own; every team for supervisors."""
    assert console.user is not None
    stmt = select(Team).order_by(Team.name)
    if not console.can(Permission.CONVERSATIONS_ASSIGN):
        stmt = stmt.join(TeamMember, TeamMember.team_id == Team.id).where(TeamMember.user_id == console.user.id)
    return list(session.scalars(stmt))


@dataclass
class InboxFilters:
    view: str
    status: str
    channel: str
    team: str


def _filters(view: str, status: str | None, channel: str, team: str) -> InboxFilters:
    return InboxFilters(
        view=view if view in VIEWS else "mine",
        # no ``status`` parameter at all: open conversations; ``status=`` (empty): every status
        status="open" if status is None else (status if status in STATUSES else ""),
        channel=channel if channel in CHANNEL_RULES else "",
        team=team,
    )


@router.get("/inbox")
def inbox(
    console: StaffConsole,
    view: Annotated[str, Query()] = "mine",
    status: Annotated[str | None, Query()] = None,
    channel: Annotated[str, Query()] = "",
    team: Annotated[str, Query()] = "",
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    user = console.require(Permission.CONVERSATIONS_READ)
    filters = _filters(view, status, channel, team)
    items: list[ConversationOut] = []
    next_cursor: str | None = None
    message: str | None = None
    teams: list[Team] = []
    assignees: dict[uuid.UUID, str] = {}
    team_names: dict[uuid.UUID, str] = {}
    try:
        with console.db.read() as session:
            teams = visible_teams(console, session)
            team_names = {t.id: t.name for t in session.scalars(select(Team))}
            team_id: uuid.UUID | None = None
            assignee = {"mine": "me", "unassigned": "none"}.get(filters.view, "any")
            if filters.view == "team":
                chosen = next((t for t in teams if str(t.id) == filters.team), teams[0] if teams else None)
                if chosen is None:
                    message = console._("You are not in any team yet.")
                else:
                    team_id = chosen.id
                    filters.team = str(chosen.id)
            if message is None:
                items, next_cursor = list_conversations(
                    session, status=filters.status or None, assignee=assignee, team_id=team_id,
                    channel=filters.channel or None, me=user.id, limit=INBOX_PAGE_SIZE, cursor=cursor,
                )  # fmt: skip
                assignees = staff_names(session, {c.assignee_id for c in items if c.assignee_id})
    except DomainError as exc:
        message = problem_text(console, exc)
    if not items and message is None:
        message = console._("No conversations here.")
    context: dict[str, Any] = {
        "filters": filters,
        "items": items,
        "next_cursor": next_cursor,
        "message": message,
        "teams": teams,
        "team_names": team_names,
        "assignees": assignees,
        "views": VIEWS,
        "statuses": STATUSES,
        "channels": list(CHANNEL_RULES),
        "more": bool(cursor),
    }
    if console.is_htmx:
        return console.render("_inbox_list.html", partial=True, **context)
    return console.render("inbox.html", **context)


# -- live updates ----------------------------------------------------------------------


class Subscribable(Protocol):
    def subscribe(self, *, heartbeat_seconds: float = 15.0) -> AsyncIterator[dict[str, Any]]: ...


class Disconnectable(Protocol):
    async def is_disconnected(self) -> bool: ...


def slim(item: dict[str, Any]) -> dict[str, Any] | None:
    """What a browser needs to know about a change: its type and conversation (no message text)."""
    kind = str(item.get("type", ""))
    if kind.split(".")[0] not in LIVE_TOPICS:
        return None
    data = item.get("data") or {}
    if not isinstance(data, dict):
        return None
    conversation = data.get("id") if kind.startswith("conversation.") else data.get("conversation_id")
    if kind == "call.ringing":  # a screen-pop for these agents: the page links to the conversation (and its 360)
        return {"type": kind, "conversation_id": conversation, "agents": list(data.get("agents") or [])}
    if kind == "typing":  # a customer typing in the web chat
        return {"type": kind, "conversation_id": conversation, "typing": bool(data.get("typing"))}
    return {"type": kind, "conversation_id": conversation}


async def console_events(
    request: Disconnectable, broadcaster: Subscribable, *, heartbeat_seconds: float = 15.0
) -> AsyncIterator[bytes]:
    """Server-sent events: ``data: {"type": ..., "conversation_id": ...}``, and comments as heartbeats."""
    yield b"retry: 2000\n: connected\n\n"
    async for item in broadcaster.subscribe(heartbeat_seconds=heartbeat_seconds):
        if await request.is_disconnected():
            break
        if item.get("type") == "ping":
            yield b": ping\n\n"
            continue
        event = slim(item)
        if event is not None:
            yield b"data: " + orjson.dumps(event) + b"\n\n"


@router.get("/stream")
async def stream(request: Request, console: StaffConsole) -> Response:
    """The console's real-time feed (the session cookie authenticates it; EventSource sends cookies)."""
    console.require(Permission.CONVERSATIONS_READ)
    response = StreamingResponse(
        console_events(request, request.app.state.broadcaster),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    return response
