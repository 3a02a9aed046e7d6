"""One conversation: every channel's messages in time, the reply box, answers, status and assignment."""

from __future__ import annotations

import base64
import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import PlainTextResponse, Response

from omnicanal.access.models import StaffUser
from omnicanal.access.roles import Permission
from omnicanal.answers.models import Answer
from omnicanal.answers.service import Suggestion, list_answers, render, suggest
from omnicanal.answers.service import clean_language as clean_answer_language
from omnicanal.console.channels import IDENTITY_LABELS, channel_style
from omnicanal.console.context import Console, ConsoleError, StaffConsole, StaffPostConsole, display_timezone
from omnicanal.console.inbox import staff_names
from omnicanal.console.routes import parse_id, problem_text
from omnicanal.conversations.channels import CHANNEL_RULES, ReplyOption
from omnicanal.conversations.models import Conversation, Message
from omnicanal.conversations.reply_content import store_reply_attachments
from omnicanal.conversations.schemas import ConversationOut
from omnicanal.conversations.service import (
    STATUSES,
    assign,
    channel_options,
    conversation_out,
    customer_names,
    get_conversation,
    list_messages,
    reply,
    set_status,
    update,
)
from omnicanal.customer360 import Customer360, customer_360
from omnicanal.customers.models import Customer
from omnicanal.db import utcnow
from omnicanal.errors import DomainError
from omnicanal.outbox.models import OutboxItem
from omnicanal.routing.models import AgentProfile, Team
from omnicanal.settings import Settings
from omnicanal.storage import discard_attachments

router = APIRouter(prefix="/console", include_in_schema=False)

MESSAGE_PAGE = 200
MESSAGES_SHOWN = 200
SIDEBAR_EVENTS = 5
SUGGESTIONS = 3
ANSWER_RESULTS = 8
TEXT_MAX = 20_000
LABELS_MAX = 30
SNOOZE_HOURS = (1, 4, 24, 72, 168)
PRIORITY_VALUES = ("low", "normal", "high", "urgent")
# the answers library formats for these channels; the rest get its plain text
ANSWER_FORMATS = {"sms": "sms", "email": "email", "whatsapp": "whatsapp", "telegram": "telegram",
                  "web": "webchat", "app": "webchat"}  # fmt: skip


@dataclass(frozen=True)
class ChannelChoice:
    channel: str
    available: bool
    reason: str
    address: str | None


def reason_text(console: Console, option: ReplyOption) -> str:
    """Why a channel can (not) carry this reply, in the agent's language."""
    rule = CHANNEL_RULES.get(option.channel)
    if option.available:
        return console._("Available")
    if rule is None or not rule.text_replies:
        return console._("This channel carries no text replies.")
    if option.template_only:
        return console._(
            "More than %(hours)s h since the customer last wrote on %(channel)s: only approved templates may be sent.",
            hours=rule.service_window_hours,
            channel=console._(channel_style(option.channel).label),
        )
    if option.address is None:
        kinds = [console._(IDENTITY_LABELS.get(kind, kind)) for kind in rule.reach]
        return console._("The customer has no %(kinds)s identity.", kinds=" / ".join(kinds))
    return option.reason


def choices(console: Console, options: list[ReplyOption]) -> list[ChannelChoice]:
    return [
        ChannelChoice(o.channel, o.available, reason_text(console, o), o.address)
        for o in sorted(options, key=lambda o: (not o.available, o.channel != "email", o.channel))
    ]


def default_channel(wanted: str | None, conversation: Conversation, options: list[ChannelChoice]) -> str | None:
    available = [o.channel for o in options if o.available]
    for candidate in (wanted, conversation.last_channel):
        if candidate in available:
            return candidate
    return available[0] if available else None


def load(console: Console, session: Session, raw_id: str) -> Conversation:
    conversation_id = parse_id(console, raw_id, console._("There is no conversation with this id."))
    try:
        return get_conversation(session, conversation_id)
    except DomainError:
        raise ConsoleError(404, console._("There is no conversation with this id.")) from None


def summary(session: Session, conversation: Conversation) -> ConversationOut:
    names = customer_names(session, {conversation.customer_id})
    return conversation_out(conversation, customer_name=names.get(conversation.customer_id))


def thread(session: Session, conversation: Conversation) -> tuple[list[Message], bool]:
    """The newest messages, oldest first; ``True`` when older ones are left out."""
    messages: list[Message] = []
    cursor: str | None = None
    for _ in range(10):
        page, cursor = list_messages(session, conversation_id=conversation.id, limit=MESSAGE_PAGE, cursor=cursor)
        messages.extend(page)
        if cursor is None:
            break
    return messages[-MESSAGES_SHOWN:], len(messages) > MESSAGES_SHOWN or cursor is not None


def thread_context(session: Session, conversation: Conversation) -> dict[str, Any]:
    messages, truncated = thread(session, conversation)
    senders: set[uuid.UUID] = set()
    for message in messages:
        if message.sender_type == "agent" and message.sender_id:
            with contextlib.suppress(ValueError):
                senders.add(uuid.UUID(message.sender_id))
    failed = [m.id for m in messages if m.status == "failed"]
    dead: dict[uuid.UUID, uuid.UUID] = {}
    if failed:
        for item_id, message_id in session.execute(
            select(OutboxItem.id, OutboxItem.message_id).where(
                OutboxItem.message_id.in_(failed), OutboxItem.state == "dead"
            )
        ):
            if message_id is not None:
                dead[message_id] = item_id
    return {
        "messages": messages,
        "truncated": truncated,
        "authors": {str(k): v for k, v in staff_names(session, senders).items()},
        "dead_items": dead,
        "conversation_id": conversation.id,
    }


def customer_language(console: Console, session: Session, conversation: Conversation) -> str:
    """The language answers are suggested in: the conversation's, the customer's, else the agent's."""
    traits = session.scalar(select(Customer.traits).where(Customer.id == conversation.customer_id)) or {}
    candidates: list[Any] = [conversation.language, traits.get("language")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            try:
                return clean_answer_language(candidate)
            except DomainError:
                continue
    return console.language


def sidebar(session: Session, conversation: Conversation) -> Customer360 | None:
    try:
        return customer_360(session, customer_id=conversation.customer_id, events=SIDEBAR_EVENTS)
    except DomainError:
        return None


def page_context(
    console: Console, session: Session, conversation: Conversation, *, draft: str = "", channel: str | None = None,
    private: bool = False,
) -> dict[str, Any]:  # fmt: skip
    options = choices(console, channel_options(session, conversation))
    can_assign = console.can(Permission.CONVERSATIONS_ASSIGN)
    agents: list[tuple[uuid.UUID, str]] = []
    teams: list[Team] = []
    if can_assign:
        rows = session.execute(
            select(StaffUser.id, StaffUser.display_name, StaffUser.email)
            .join(AgentProfile, AgentProfile.user_id == StaffUser.id, isouter=True)
            .where(StaffUser.active.is_(True))
            .order_by(StaffUser.display_name, StaffUser.email)
        )
        agents = [(user_id, name or email) for user_id, name, email in rows]
        teams = list(session.scalars(select(Team).order_by(Team.name)))
    out = summary(session, conversation)
    team_name = (
        session.scalar(select(Team.name).where(Team.id == conversation.team_id)) if conversation.team_id else None
    )
    return {
        "c": out,
        "assignee_name": staff_names(session, {out.assignee_id}).get(out.assignee_id) if out.assignee_id else None,
        "team_name": team_name,
        "options": options,
        "selected": default_channel(channel, conversation, options),
        "draft": draft,
        "private": private,
        "view": sidebar(session, conversation),
        "agents": agents,
        "teams": teams,
        "can_assign": can_assign,
        "can_write": console.can(Permission.CONVERSATIONS_WRITE),
        "statuses": STATUSES,
        "snooze_hours": SNOOZE_HOURS,
        "priority_values": PRIORITY_VALUES,
        **thread_context(session, conversation),
    }


def show(console: Console, conversation_id: str, *, status: int = 200, **draft: Any) -> Response:
    with console.db.read() as session:
        conversation = load(console, session, conversation_id)
        context = page_context(console, session, conversation, **draft)
    return console.render("conversation.html", status=status, **context)


@router.get("/conversations/{conversation_id}")
def conversation_page(console: StaffConsole, conversation_id: str) -> Response:
    console.require(Permission.CONVERSATIONS_READ)
    return show(console, conversation_id)


@router.get("/conversations/{conversation_id}/messages")
def conversation_messages(console: StaffConsole, conversation_id: str) -> Response:
    console.require(Permission.CONVERSATIONS_READ)
    with console.db.read() as session:
        conversation = load(console, session, conversation_id)
        context = thread_context(session, conversation)
    return console.render("_messages.html", partial=True, **context)


@router.get("/conversations/{conversation_id}/head")
def conversation_head(console: StaffConsole, conversation_id: str) -> Response:
    console.require(Permission.CONVERSATIONS_READ)
    with console.db.read() as session:
        conversation = load(console, session, conversation_id)
        out = summary(session, conversation)
        assignee = staff_names(session, {out.assignee_id}).get(out.assignee_id) if out.assignee_id else None
        team_name = (
            session.scalar(select(Team.name).where(Team.id == conversation.team_id)) if conversation.team_id else None
        )
    return console.render(
        "_conversation_head.html", partial=True, c=out, assignee_name=assignee, team_name=team_name,
        can_write=console.can(Permission.CONVERSATIONS_WRITE), statuses=STATUSES, snooze_hours=SNOOZE_HOURS,
    )  # fmt: skip


@router.get("/conversations/{conversation_id}/channels")
def conversation_channels(
    console: StaffConsole, conversation_id: str, channel: Annotated[str | None, Query()] = None
) -> Response:
    console.require(Permission.CONVERSATIONS_READ)
    with console.db.read() as session:
        conversation = load(console, session, conversation_id)
        options = choices(console, channel_options(session, conversation))
    return console.render(
        "_channel_picker.html", partial=True, options=options, selected=default_channel(channel, conversation, options),
        conversation_id=conversation.id,
    )  # fmt: skip


def last_customer_text(session: Session, conversation: Conversation) -> str:
    text = session.scalar(
        select(Message.text)
        .where(Message.conversation_id == conversation.id, Message.direction == "inbound")
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    )
    return (text or "").strip()[:TEXT_MAX]


@router.get("/conversations/{conversation_id}/suggestions")
def conversation_suggestions(console: StaffConsole, conversation_id: str) -> Response:
    console.require(Permission.CONVERSATIONS_READ)
    found: list[Suggestion] = []
    message: str | None = None
    with console.db.read() as session:
        conversation = load(console, session, conversation_id)
        text = last_customer_text(session, conversation)
        language = customer_language(console, session, conversation)
        if text:
            try:
                found = suggest(session, text=text, language=language, limit=SUGGESTIONS)
            except DomainError as exc:
                message = problem_text(console, exc)
    return console.render(
        "_suggestions.html", partial=True, suggestions=found, message=message, conversation_id=conversation.id,
        language=language,
    )  # fmt: skip


@router.get("/conversations/{conversation_id}/answers")
def search_answers(console: StaffConsole, conversation_id: str, q: Annotated[str, Query()] = "") -> Response:
    """What the ``/`` shortcut lists: answers whose words (or shortcut) start with what follows the slash."""
    console.require(Permission.CONVERSATIONS_READ)
    query = q.strip()[:200]
    results: list[Answer] = []
    with console.db.read() as session:
        conversation = load(console, session, conversation_id)
        language = customer_language(console, session, conversation)
        try:
            if not any(ch.isalnum() for ch in query):
                query = ""
            results, _ = list_answers(session, q=query or None, language=language, active=True, limit=ANSWER_RESULTS)
            if not results:
                results, _ = list_answers(session, q=query or None, active=True, limit=ANSWER_RESULTS)
        except DomainError:
            results = []
        if query:
            shortcut = query.lower()
            results.sort(key=lambda a: (a.shortcut != shortcut, not (a.shortcut or "").startswith(shortcut)))
    return console.render(
        "_answer_results.html", partial=True, answers=results, q=query, conversation_id=conversation.id
    )


@router.get("/conversations/{conversation_id}/answers/{answer_id}")
def rendered_answer(
    console: StaffConsole, conversation_id: str, answer_id: str, channel: Annotated[str, Query()] = ""
) -> Response:
    """An answer's text for this customer and the chosen channel, to insert into the reply box."""
    user = console.require(Permission.CONVERSATIONS_READ)
    aid = parse_id(console, answer_id, console._("There is no answer with this id."))
    with console.db.read() as session:
        conversation = load(console, session, conversation_id)
        try:
            rendered = render(
                session, answer_id=aid, channel=ANSWER_FORMATS.get(channel, "telegram"),
                customer_id=conversation.customer_id, agent_name=user.name,
            )  # fmt: skip
        except DomainError:
            raise ConsoleError(404, console._("There is no answer with this id.")) from None
    return console.finish(PlainTextResponse(rendered.text))


# -- commands ----------------------------------------------------------------------------


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
