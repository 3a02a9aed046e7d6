"""What an agent does in a conversation from the console: reply (on the channel picked), typing, status,
assignment and details. The page itself is in ``conversation.py``."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from starlette.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.console.channels import channel_style
from omnicanal.console.context import Console, ConsoleError, StaffPostConsole, display_timezone
from omnicanal.console.conversation import (
    LABELS_MAX,
    PRIORITY_VALUES,
    SNOOZE_HOURS,
    TEXT_MAX,
    load,
    reason_text,
    show,
)
from omnicanal.console.routes import parse_id, problem_text
from omnicanal.conversations.reply_content import store_reply_attachments
from omnicanal.conversations.service import (
    STATUSES,
    assign,
    channel_options,
    reply,
    set_status,
    update,
)
from omnicanal.db import utcnow
from omnicanal.errors import DomainError
from omnicanal.settings import Settings
from omnicanal.storage import discard_attachments

router = APIRouter(prefix="/console", include_in_schema=False)


def back(console: Console, conversation_id: uuid.UUID) -> Response:
    return console.redirect(f"/console/conversations/{conversation_id}")


def reply_files(settings: Settings, uploads: list[UploadFile]) -> list[dict[str, Any]]:
    """The files chosen in the reply box, checked and stored as the API does with inline files."""
    raw = []
    for upload in uploads[:10]:
        data = upload.file.read(settings.attachment_max_bytes + 1)
        content_type = upload.content_type or "application/octet-stream"
        raw.append({"name": upload.filename or "file", "content_type": content_type,
                    "data": base64.b64encode(data).decode()})  # fmt: skip
    return store_reply_attachments(raw, settings=settings)


@router.post("/conversations/{conversation_id}/reply")
def post_reply(
    console: StaffPostConsole,
    conversation_id: str,
    text: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "",
    private: Annotated[str, Form()] = "",
    answer_id: Annotated[str, Form()] = "",
    files: Annotated[list[UploadFile] | None, File()] = None,
) -> Response:
    user = console.require(Permission.CONVERSATIONS_WRITE)
    cid = parse_id(console, conversation_id, console._("There is no conversation with this id."))
    is_note = private in ("1", "on", "true", "yes")
    draft = {"draft": text, "channel": channel or None, "private": is_note}
    problem: str | None = None
    uploads = [f for f in files or [] if f.filename]
    if not text.strip() and not uploads:
        problem = console._("Write a message before sending.")
    elif len(text) > TEXT_MAX:
        problem = console._("The message is too long (at most %(max)s characters).", max=TEXT_MAX)
    elif not is_note:
        with console.db.read() as session:
            conversation = load(console, session, conversation_id)
            options = {o.channel: o for o in channel_options(session, conversation)}
        chosen = options.get(channel)
        if chosen is None:
            problem = console._("Choose a channel for the reply.")
        elif not chosen.available:
            problem = console._(
                "You cannot reply on %(channel)s: %(reason)s",
                channel=console._(channel_style(channel).label),
                reason=reason_text(console, chosen),
            )
    if problem is None:
        answer: uuid.UUID | None = None
        try:
            answer = uuid.UUID(answer_id) if answer_id else None
        except ValueError:
            answer = None
        stored: list[dict[str, Any]] = []
        try:
            stored = reply_files(console.settings, uploads)
            with console.db.write() as session:
                reply(
                    session, conversation_id=cid, text=text, channel=None if is_note else channel, private=is_note,
                    author_type="agent", author_id=str(user.id), answer_id=answer, attachments=stored,
                )  # fmt: skip
        except DomainError as exc:
            discard_attachments(stored, settings=console.settings)
            problem = problem_text(console, exc)
    if problem is not None:
        console.flash("error", problem)
        return show(console, conversation_id, status=422, **draft)
    if is_note:
        console.flash("success", console._("Private note added."))
    else:
        console.flash(
            "success", console._("Reply queued on %(channel)s.", channel=console._(channel_style(channel).label))
        )
    return back(console, cid)


@router.post("/conversations/{conversation_id}/typing")
def post_typing(console: StaffPostConsole, conversation_id: str, typing: Annotated[str, Form()] = "1") -> Response:
    """The agent is typing a reply: the customer's open web chat shows it (no database write)."""
    console.require(Permission.CONVERSATIONS_WRITE)
    cid = parse_id(console, conversation_id, console._("There is no conversation with this id."))
    item = {"type": "widget.typing", "data": {"conversation_id": str(cid), "typing": typing not in ("0", "false")}}
    console.request.app.state.broadcaster.publish(item)
    return Response(status_code=204)


def _snooze_until(hours: str, until: str) -> datetime | None:
    if until.strip():
        try:
            moment = datetime.fromisoformat(until.strip())
        except ValueError:
            return None
        # what staff type is wall-clock time in the console's time zone
        return moment if moment.tzinfo else moment.replace(tzinfo=display_timezone())
    try:
        count = int(hours)
    except ValueError:
        return None
    return utcnow() + timedelta(hours=count) if count in SNOOZE_HOURS else None


@router.post("/conversations/{conversation_id}/status")
def post_status(
    console: StaffPostConsole,
    conversation_id: str,
    status: Annotated[str, Form()] = "",
    snooze_hours: Annotated[str, Form()] = "",
    snooze_until: Annotated[str, Form()] = "",
) -> Response:
    user = console.require(Permission.CONVERSATIONS_WRITE)
    cid = parse_id(console, conversation_id, console._("There is no conversation with this id."))
    if status not in STATUSES:
        console.flash("error", console._("Choose a status."))
        return back(console, cid)
    wake: datetime | None = None
    if status == "snoozed":
        wake = _snooze_until(snooze_hours, snooze_until)
        if wake is None or wake <= utcnow():
            console.flash("error", console._("Choose when the conversation should wake up (a future time)."))
            return back(console, cid)
    try:
        with console.db.write() as session:
            set_status(session, conversation_id=cid, status=status, snooze_until=wake, actor=user.actor)
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return back(console, cid)
    wake_text = wake.astimezone(display_timezone()).strftime("%Y-%m-%d %H:%M %Z") if wake else ""
    messages = {
        "open": console._("The conversation is open again."),
        "pending": console._("The conversation is pending: waiting for the customer."),
        "snoozed": console._("Snoozed until %(when)s.", when=wake_text),
        "resolved": console._("The conversation is resolved."),
    }
    console.flash("success", messages[status])
    return back(console, cid)


@router.post("/conversations/{conversation_id}/assign")
def post_assign(console: StaffPostConsole, conversation_id: str, to: Annotated[str, Form()] = "") -> Response:
    user = console.require(Permission.CONVERSATIONS_WRITE)
    cid = parse_id(console, conversation_id, console._("There is no conversation with this id."))
    agent_id: uuid.UUID | None = None
    team_id: uuid.UUID | None = None
    kind, _, value = to.partition(":")
    try:
        if to == "me":
            agent_id = user.id
        elif kind == "agent":
            agent_id = uuid.UUID(value)
        elif kind == "team":
            team_id = uuid.UUID(value)
    except ValueError:
        pass
    if agent_id is None and team_id is None:
        console.flash("error", console._("Choose an agent or a team."))
        return back(console, cid)
    try:
        with console.db.write() as session:
            conversation = load(console, session, conversation_id)
            taking_free_work = agent_id == user.id and conversation.assignee_id in (None, user.id)
            if not taking_free_work and not console.can(Permission.CONVERSATIONS_ASSIGN):
                raise ConsoleError(403, console._("Your role does not allow this action."))
            assign(session, conversation_id=cid, agent_id=agent_id, team_id=team_id, actor=user.actor)
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return back(console, cid)
    console.flash("success", console._("Assignment saved."))
    return back(console, cid)


@router.post("/conversations/{conversation_id}/details")
def post_details(
    console: StaffPostConsole,
    conversation_id: str,
    priority: Annotated[str, Form()] = "",
    labels: Annotated[str, Form()] = "",
) -> Response:
    console.require(Permission.CONVERSATIONS_WRITE)
    cid = parse_id(console, conversation_id, console._("There is no conversation with this id."))
    if priority not in PRIORITY_VALUES:
        console.flash("error", console._("Choose a priority."))
        return back(console, cid)
    names = [label.strip() for label in labels.replace(";", ",").split(",") if label.strip()]
    if len(names) > LABELS_MAX:
        console.flash("error", console._("At most %(max)s labels.", max=LABELS_MAX))
        return back(console, cid)
    try:
        with console.db.write() as session:
            update(session, conversation_id=cid, priority=priority, labels=names)
    except DomainError as exc:
        console.flash("error", problem_text(console, exc))
        return back(console, cid)
    console.flash("success", console._("Priority and labels saved."))
    return back(console, cid)
