"""One conversation: every channel's messages in time, the reply box, answers, status and assignment.

The page and what it reads; what the agent does there (reply, status, assignment...) is in
``conversation_actions.py``.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import PlainTextResponse, Response

from omnicanal.access.models import StaffUser
from omnicanal.access.roles import Permission
from omnicanal.answers.models import Answer
from omnicanal.answers.service import Suggestion, list_answers, render, suggest
from omnicanal.answers.service import clean_language as clean_answer_language
from omnicanal.console.channels import IDENTITY_LABELS, channel_style
from omnicanal.console.context import Console, ConsoleError, StaffConsole
from omnicanal.console.inbox import staff_names
from omnicanal.console.routes import parse_id, problem_text
from omnicanal.conversations.channels import CHANNEL_RULES, ReplyOption
from omnicanal.conversations.inbox import conversation_out, customer_names
from omnicanal.conversations.models import Conversation, Message
from omnicanal.conversations.schemas import ConversationOut
from omnicanal.conversations.service import (
    STATUSES,
    channel_options,
    get_conversation,
    list_messages,
)
from omnicanal.customer360 import Customer360, customer_360
from omnicanal.customers.models import Customer
from omnicanal.errors import DomainError
from omnicanal.outbox.models import OutboxItem
from omnicanal.routing.models import AgentProfile, Team
from omnicanal.storage import file_headers, stored_file

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


@router.get("/conversations/{conversation_id}/messages/{message_id}/files/{index}")
def conversation_file(console: StaffConsole, conversation_id: str, message_id: str, index: int) -> Response:
    """A file a message carries, as the store holds it (received from a provider, or attached by an agent)."""
    console.require(Permission.CONVERSATIONS_READ)
    missing = console._("There is no such file.")
    with console.db.read() as session:
        conversation = load(console, session, conversation_id)
        message = session.get(Message, parse_id(console, message_id, missing))
        files = message.attachments or [] if message is not None else []
        if message is None or message.conversation_id != conversation.id or not 0 <= index < len(files):
            raise ConsoleError(404, missing)
        attachment = dict(files[index])
    data = stored_file(console.db.settings, attachment)
    if data is None:  # never stored (a provider's link), or erased meanwhile
        raise ConsoleError(404, missing)
    headers = file_headers(
        str(attachment.get("name") or str(attachment["key"]).rsplit("/", 1)[-1]), disposition="inline"
    )
    # a received file is the sender's content: never let the browser run it as a page of the console
    headers["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src 'self'; media-src 'self'"
    media_type = str(attachment.get("content_type") or "application/octet-stream")
    return Response(data, media_type=media_type, headers=headers)
