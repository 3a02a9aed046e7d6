from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.conversations import inbox, service
from omnicanal.conversations.channels import MESSAGE_CHANNELS
from omnicanal.conversations.inbound import InboundInput
from omnicanal.conversations.reply_content import store_reply_attachments
from omnicanal.conversations.schemas import (
    AssignIn,
    ConversationOut,
    ConversationPage,
    ConversationPatch,
    InboundMessageIn,
    MessageOut,
    MessagePage,
    ReplyIn,
    ReplyOptionOut,
    StatusIn,
)
from omnicanal.customers.identities import normalize_identity
from omnicanal.db import Database, utcnow
from omnicanal.errors import NotFound, ValidationFailed
from omnicanal.idempotency import run_idempotent
from omnicanal.storage import discard_attachments, store_attachments
from omnicanal.timeline.writer import IngestWriter
from omnicanal.web import (
    AppSettings,
    FastJSONResponse,
    ReadSession,
    WriteSession,
    authorize,
    body_as_fastapi_reads_it,
    require,
    served_by,
)

router = APIRouter(prefix="/api/v1", tags=["conversations"])

Reader = Annotated[Principal, Depends(require(Permission.CONVERSATIONS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CONVERSATIONS_WRITE))]
Assigner = Annotated[Principal, Depends(require(Permission.CONVERSATIONS_ASSIGN))]
Inbound = Annotated[Principal, Depends(require(Permission.MESSAGES_INBOUND))]


def prepare_inbound(data: InboundMessageIn, settings: Any) -> InboundInput:
    if data.channel not in MESSAGE_CHANNELS:
        raise ValidationFailed.on_field(
            "channel", f"unknown channel {data.channel!r}; one of: {', '.join(sorted(MESSAGE_CHANNELS))}"
        )
    if not data.text.strip() and not data.attachments:
        raise ValidationFailed.on_field("text", "a message needs text or at least one attachment")
    if not data.identities and data.customer_id is None:
        raise ValidationFailed.on_field("identities", "give at least one identity or a customer_id")
    now = utcnow()
    occurred_at = data.occurred_at or now
    if occurred_at.tzinfo is None:
        raise ValidationFailed.on_field("occurred_at", "must carry a timezone, e.g. 2026-11-23T10:00:00Z")
    if (occurred_at - now).total_seconds() > settings.future_tolerance_seconds:
        raise ValidationFailed.on_field("occurred_at", "is too far in the future")
    keys = [
        (i.type, normalize_identity(i.type, i.value, region=settings.default_region, field=f"identities[{n}]"))
        for n, i in enumerate(data.identities)
    ]
    attachments = (
        store_attachments([a.model_dump() for a in data.attachments], settings=settings) if data.attachments else []
    )
    return InboundInput(
        channel=data.channel, identities=keys, customer_id=data.customer_id, text=data.text,
        attachments=attachments, external_id=data.external_id, occurred_at=occurred_at,
    )  # fmt: skip


_INBOUND = TypeAdapter(InboundMessageIn)


async def _serve_inbound(request: Request) -> Response:
    # What FastAPI did for inbound_message below, in the same order: the caller (401/403), then the
    # body (the same 422s), then the message through the ingest writer.
    await authorize(request, Permission.MESSAGES_INBOUND)
    raw = await request.body()
    if raw and request.headers.get("content-type") == "application/json":
        # pydantic reads the JSON itself, without a dict of the body on the way (bench, C1). Whatever it
        # refuses is read again the way FastAPI reads a body, so every refusal and its 422 stay the same.
        try:
            parsed = _INBOUND.validate_json(raw)
        except ValidationError:
            pass
        else:
            return await _accept_inbound(parsed, request, request.app.state.settings)
    body = await body_as_fastapi_reads_it(request)
    try:
        data = _INBOUND.validate_python(body, from_attributes=True)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
    return await _accept_inbound(data, request, request.app.state.settings)


async def _accept_inbound(data: InboundMessageIn, request: Request, settings: Any) -> Response:
    item = (
        await run_in_threadpool(prepare_inbound, data, settings)
        if data.attachments
        else prepare_inbound(data, settings)
    )
    writer: IngestWriter = request.app.state.ingest_writer
    try:
        (result,) = await writer.run(request.app.state.receive_messages, [item])
    except BaseException:
        discard_attachments(item.attachments, settings=settings)
        raise
    if result.error is not None or result.duplicate:
        discard_attachments(item.attachments, settings=settings)  # the files of a message not kept
    if result.error is not None:
        if isinstance(result.error, NotFound):
            raise ValidationFailed.on_field("customer_id", result.error.detail)
        raise result.error
    return FastJSONResponse(
        {  # orjson writes a UUID's text itself, at a sixth of the cost of str() on each (bench, C1)
            "message_id": result.message_id,
            "conversation_id": result.conversation_id,
            "customer_id": result.customer_id,
            "duplicate": result.duplicate,
        },
        status_code=200 if result.duplicate else 201,
    )


async def inbound_message(data: InboundMessageIn, request: Request, settings: AppSettings, _: Inbound) -> Response:
    """A customer's message from any channel: it joins the customer's one conversation."""
    # The documented signature (OpenAPI); requests are served by _serve_inbound (bench, C1).
    return await _accept_inbound(data, request, settings)


router.add_api_route(
    "/messages/inbound",
    inbound_message,
    methods=["POST"],
    status_code=201,
    route_class_override=served_by(_serve_inbound),
)


def _principal_author(principal: Principal) -> tuple[str, str]:
    return ("agent", str(principal.id)) if principal.kind == "user" else ("agent", principal.label)


_QUERY_TYPES: dict[str, TypeAdapter[Any]] = {
    "team": TypeAdapter(uuid.UUID | None),
    "customer_id": TypeAdapter(uuid.UUID | None),
    "limit": TypeAdapter(int),
}


def _inbox_json(db: Database, me: uuid.UUID | None, params: dict[str, Any]) -> bytes:
    if db.is_sqlite and params["customer_id"] is None:
        fast = {name: value for name, value in params.items() if name != "customer_id"}
        with db.sqlite_read() as connection:
            items, next_cursor = inbox.sqlite_inbox_page(connection, me=me, **fast)
    else:
        with db.read() as session:
            items, next_cursor = inbox.inbox_page(session, me=me, **params)
    # serialized as ConversationPage would be (UUIDs as text, datetimes in UTC with "Z")
    return orjson.dumps({"items": items, "next_cursor": next_cursor}, option=orjson.OPT_UTC_Z)


async def _serve_inbox(request: Request) -> Response:
    # What FastAPI did for list_conversations below, in the same order: the caller (401/403), then the
    # query parameters (the same 422s), then one thread hop for the whole read (session, query, JSON)
    # inside the read gate that ReadSession uses. No ORM objects, no response-model revalidation (bench, C2).
    principal = await authorize(request, Permission.CONVERSATIONS_READ)
    query = request.query_params
    params: dict[str, Any] = {
        "status": query.get("status"), "assignee": query.get("assignee"), "channel": query.get("channel"),
        "cursor": query.get("cursor"), "team_id": None, "customer_id": None, "limit": 25,
    }  # fmt: skip
    errors: list[Any] = []
    for name, adapter in _QUERY_TYPES.items():
        raw = query.get(name)
        if raw is None:
            continue
        try:
            params["team_id" if name == "team" else name] = adapter.validate_python(raw)
        except ValidationError as exc:
            errors += [{**error, "loc": ("query", name, *error["loc"])} for error in exc.errors(include_url=False)]
    if errors:
        raise RequestValidationError(errors)
    db: Database = request.app.state.database
    me = principal.id if principal.kind == "user" else None
    body = await db.run_read(_inbox_json, db, me, params)
    return Response(body, media_type="application/json")


def list_conversations(
    session: ReadSession,
    principal: Reader,
    status: str | None = None,
    assignee: str | None = None,
    team: uuid.UUID | None = None,
    channel: str | None = None,
    customer_id: uuid.UUID | None = None,
    limit: int = 25,
    cursor: str | None = None,
) -> ConversationPage:
    # The documented signature (OpenAPI); requests are served by _serve_inbox.
    items, next_cursor = inbox.list_conversations(
        session, status=status, assignee=assignee, team_id=team, channel=channel, customer_id=customer_id,
        me=principal.id if principal.kind == "user" else None, limit=limit, cursor=cursor,
    )  # fmt: skip
    return ConversationPage(items=items, next_cursor=next_cursor)


router.add_api_route(
    "/conversations",
    list_conversations,
    methods=["GET"],
    response_model=ConversationPage,
    route_class_override=served_by(_serve_inbox),
)


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
def get_conversation(conversation_id: uuid.UUID, session: ReadSession, _: Reader) -> ConversationOut:
    conversation = service.get_conversation(session, conversation_id)
    names = inbox.customer_names(session, {conversation.customer_id})
    return inbox.conversation_out(conversation, customer_name=names.get(conversation.customer_id))


@router.get("/conversations/{conversation_id}/messages", response_model=MessagePage)
def list_messages(
    conversation_id: uuid.UUID, session: ReadSession, _: Reader, limit: int = 100, cursor: str | None = None
) -> MessagePage:
    rows, next_cursor = service.list_messages(session, conversation_id=conversation_id, limit=limit, cursor=cursor)
    return MessagePage(items=[service.message_out(m) for m in rows], next_cursor=next_cursor)


@router.get("/conversations/{conversation_id}/reply-options", response_model=list[ReplyOptionOut])
def reply_options(conversation_id: uuid.UUID, session: ReadSession, _: Reader) -> list[ReplyOptionOut]:
    conversation = service.get_conversation(session, conversation_id)
    return [ReplyOptionOut(**vars(o)) for o in service.channel_options(session, conversation)]


@router.post("/conversations/{conversation_id}/messages", response_model=MessageOut, status_code=201)
def post_message(
    conversation_id: uuid.UUID, data: ReplyIn, request: Request, session: WriteSession, principal: Writer
) -> Any:
    """A reply (or a private note). A retried request with the same ``Idempotency-Key`` sends nothing twice."""

    def produce() -> tuple[int, Any]:
        without_text = (data.attachments or data.location) and data.answer_id is None
        if (data.text is None) == (data.answer_id is None) and not without_text:
            raise ValidationFailed.on_field("text", "give exactly one of text or answer_id")
        text = data.text or ""
        if data.answer_id is not None:
            text = _render_answer(session, conversation_id, data)
        author_type, author_id = _principal_author(principal)
        settings = request.app.state.settings
        rich = data.interactive.model_dump(exclude_none=True) if data.interactive else None
        if data.location is not None:
            if rich is not None:
                raise ValidationFailed.on_field("location", "give either interactive or location, not both")
            rich = {"type": "location", **data.location.model_dump(exclude_none=True)}
        files = store_reply_attachments([a.model_dump() for a in data.attachments], settings=settings)
        try:
            message = service.reply(
                session, conversation_id=conversation_id, text=text, channel=data.channel, private=data.private,
                author_type=author_type, author_id=author_id, answer_id=data.answer_id, attachments=files,
                interactive=rich,
            )  # fmt: skip
            session.flush()
        except BaseException:
            discard_attachments(files, settings=settings)
            raise
        return 201, service.message_out(message).model_dump(mode="json")

    return run_idempotent(
        request, session, principal, data.model_dump(mode="json"), produce, customer_of=lambda c: c["customer_id"]
    )


def _render_answer(session: Any, conversation_id: uuid.UUID, data: ReplyIn) -> str:
    from omnicanal.answers.service import render_for_conversation

    # formatted for the channel the reply leaves on: the one asked for, else the customer's last one
    channel = data.channel
    if channel is None and not data.private:
        channel = service.default_reply_channel(session, service.get_conversation(session, conversation_id))
    return render_for_conversation(
        session, answer_id=data.answer_id, conversation_id=conversation_id, channel=channel, context=data.context
    )


@router.post("/conversations/{conversation_id}/assign", response_model=ConversationOut)
def assign(conversation_id: uuid.UUID, data: AssignIn, session: WriteSession, principal: Assigner) -> ConversationOut:
    conversation = service.assign(
        session, conversation_id=conversation_id, agent_id=data.agent_id, team_id=data.team_id, actor=principal.label
    )
    return inbox.conversation_out(conversation)


@router.post("/conversations/{conversation_id}/status", response_model=ConversationOut)
def set_status(conversation_id: uuid.UUID, data: StatusIn, session: WriteSession, principal: Writer) -> ConversationOut:
    conversation = service.set_status(
        session, conversation_id=conversation_id, status=data.status, snooze_until=data.snooze_until,
        actor=principal.label,
    )  # fmt: skip
    return inbox.conversation_out(conversation)


@router.patch("/conversations/{conversation_id}", response_model=ConversationOut)
def patch_conversation(
    conversation_id: uuid.UUID, data: ConversationPatch, session: WriteSession, _: Writer
) -> ConversationOut:
    conversation = service.update(session, conversation_id=conversation_id, priority=data.priority, labels=data.labels)
    return inbox.conversation_out(conversation)
