"""The supervisor's view (queues, agent load, SLA breaches), agents going online, and the outbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.console.context import Console, StaffConsole, StaffPostConsole
from omnicanal.console.routes import parse_id, problem_text
from omnicanal.console.security import safe_next
from omnicanal.conversations.delivery import update_delivery_status
from omnicanal.conversations.inbox import conversation_out, customer_names
from omnicanal.conversations.models import Conversation
from omnicanal.conversations.schemas import ConversationOut
from omnicanal.db import utcnow
from omnicanal.errors import DomainError
from omnicanal.outbox.models import OutboxItem
from omnicanal.outbox.service import STATES, list_items, retry
from omnicanal.routing.admin import list_agents, update_agent
from omnicanal.routing.models import Team
from omnicanal.routing.schemas import AgentIn, AgentOut

router = APIRouter(prefix="/console", include_in_schema=False)

BREACHES_SHOWN = 25
OUTBOX_PAGE_SIZE = 50
WAITING = ("open", "pending")


@dataclass
class QueueRow:
    team_id: uuid.UUID | None
    name: str | None
    unassigned: int = 0
    oldest_waiting: datetime | None = None
    open: int = 0
    breaches: int = 0


def _breached(now: datetime) -> Any:
    return and_(
        Conversation.status != "resolved",
        or_(
            and_(Conversation.first_response_at.is_(None), Conversation.first_response_due_at < now),
            Conversation.resolution_due_at < now,
        ),
    )


def queues(session: Session, now: datetime) -> list[QueueRow]:
    rows: dict[uuid.UUID | None, QueueRow] = {
        team.id: QueueRow(team.id, team.name) for team in session.scalars(select(Team).order_by(Team.name))
    }

    def row(team_id: uuid.UUID | None) -> QueueRow:
        return rows.setdefault(team_id, QueueRow(team_id, None))

    waiting_since = func.min(func.coalesce(Conversation.last_inbound_at, Conversation.created_at))
    for team_id, count, oldest in session.execute(
        select(Conversation.team_id, func.count(), waiting_since)
        .where(Conversation.assignee_id.is_(None), Conversation.status.in_(WAITING))
        .group_by(Conversation.team_id)
    ):
        row(team_id).unassigned, row(team_id).oldest_waiting = int(count), oldest
    for team_id, count in session.execute(
        select(Conversation.team_id, func.count())
        .where(Conversation.status.in_(WAITING))
        .group_by(Conversation.team_id)
    ):
        row(team_id).open = int(count)
    for team_id, count in session.execute(
        select(Conversation.team_id, func.count()).where(_breached(now)).group_by(Conversation.team_id)
    ):
        row(team_id).breaches = int(count)
    return [r for r in rows.values() if r.team_id is not None or r.open or r.unassigned]


def breaches(session: Session, now: datetime) -> list[ConversationOut]:
    found = list(
        session.scalars(
            select(Conversation)
            .where(_breached(now))
            .order_by(func.coalesce(Conversation.first_response_due_at, Conversation.resolution_due_at))
            .limit(BREACHES_SHOWN)
        )
    )
    names = customer_names(session, {c.customer_id for c in found})
    return [conversation_out(c, customer_name=names.get(c.customer_id), now=now) for c in found]


@router.get("/supervision")
def supervision(console: StaffConsole) -> Response:
    console.require(Permission.CONVERSATIONS_ASSIGN)
    now = utcnow()
    with console.db.read() as session:
        context: dict[str, Any] = {
            "queues": queues(session, now),
            "agents": list_agents(session),
            "team_names": {t.id: t.name for t in session.scalars(select(Team))},
            "breaches": breaches(session, now),
            "can_manage": console.can(Permission.ROUTING_MANAGE),
        }
    if console.is_htmx:
        return console.render("_supervision_body.html", partial=True, **context)
    return console.render("supervision.html", **context)


def _set_online(console: Console, user_id: uuid.UUID, online: bool) -> tuple[AgentOut | None, int]:
    assert console.user is not None
    with console.db.write() as session:
        _, assigned = update_agent(session, user_id, AgentIn(online=online), actor=console.user.actor)
        agent = next((a for a in list_agents(session) if a.user_id == user_id), None)
    return agent, len(assigned)


def _online_message(console: Console, online: bool, taken: int, own: bool) -> str:
    if not online:
        return (
            console._("You are offline: no new conversations will be assigned to you.")
            if own
            else console._("The agent is offline.")
        )
    if own:
        return console._("You are online. Conversations assigned from the queue: %(count)s.", count=taken)
    return console._("The agent is online. Conversations assigned from the queue: %(count)s.", count=taken)


@router.post("/me/online")
def toggle_my_status(
    console: StaffPostConsole, online: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""
) -> Response:
    user = console.require(Permission.CONVERSATIONS_WRITE)
    wanted = online == "1"
    try:
        _, taken = _set_online(console, user.id, wanted)
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect(safe_next(next, "/console/inbox"))
    console.flash("success", _online_message(console, wanted, taken, own=True))
    return console.redirect(safe_next(next, "/console/inbox"))


@router.post("/agents/{user_id}/online")
def toggle_agent_status(console: StaffPostConsole, user_id: str, online: Annotated[str, Form()] = "") -> Response:
    console.require(Permission.ROUTING_MANAGE)
    uid = parse_id(console, user_id, console._("There is no agent with this id."))
    wanted = online == "1"
    try:
        _, taken = _set_online(console, uid, wanted)
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect("/console/supervision")
    console.flash("success", _online_message(console, wanted, taken, own=False))
    return console.redirect("/console/supervision")


# -- outbox ------------------------------------------------------------------------------


@router.get("/outbox")
def outbox(
    console: StaffConsole,
    state: Annotated[str, Query()] = "dead",
    cursor: Annotated[str | None, Query()] = None,
) -> Response:
    console.require(Permission.OUTBOX_MANAGE)
    state = state if state in (*STATES, "all") else "dead"
    items: list[OutboxItem] = []
    next_cursor: str | None = None
    message: str | None = None
    counts: dict[str, int] = {}
    try:
        with console.db.read() as session:
            items, next_cursor = list_items(
                session, state=None if state == "all" else state, limit=OUTBOX_PAGE_SIZE, cursor=cursor
            )
            counts = {
                str(s): int(n)
                for s, n in session.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state))
            }
    except DomainError as exc:
        message = problem_text(console, exc)
    if not items and message is None:
        message = console._("Nothing in this state.")
    return console.render(
        "outbox.html", state=state, states=STATES, items=items, next_cursor=next_cursor, message=message,
        counts=counts,
    )  # fmt: skip


@router.post("/outbox/{item_id}/retry")
def retry_item(console: StaffPostConsole, item_id: str, next: Annotated[str, Form()] = "") -> Response:
    console.require(Permission.OUTBOX_MANAGE)
    iid = parse_id(console, item_id, console._("There is no outbox item with this id."))
    target = safe_next(next, "/console/outbox?state=dead")
    try:
        with console.db.write() as session:
            item = retry(session, item_id=iid)
            if item.message_id is not None:
                # the message is on its way again: "queued" until the provider takes it
                update_delivery_status(session, message_id=item.message_id, status="queued")
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return console.redirect(target)
    console.flash("success", console._("Sent back to the queue: it will be delivered again shortly."))
    return console.redirect(target)
