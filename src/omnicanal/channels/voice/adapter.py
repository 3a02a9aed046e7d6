"""Voice: ``/webhooks/voice/{channel_id}`` (incoming call) and ``/webhooks/voice/{channel_id}/status``.

An incoming call is a message on the ``phone`` channel (threaded into the caller's conversation,
external id = CallSid); the routed team's agents get a ``call.ringing`` screen-pop with the customer
360 through the real-time stream. The status callback (or the ``<Dial>`` action) logs the call —
direction, duration, recording — on the message and the timeline; a call nobody answered becomes a
callback task. Agents add disposition and notes with ``POST /api/v1/calls/{call_sid}/log``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Annotated, Any
from xml.sax.saxutils import escape, quoteattr

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.channels.inbound import configured, in_writer, store
from omnicanal.channels.registry import ChannelType, ConfigKey, register
from omnicanal.channels.sms.adapter import verified_form
from omnicanal.channels.voice.callbacks import request_callback
from omnicanal.channels.voice.callbacks import router as callbacks_router
from omnicanal.conversations.inbound import InboundInput
from omnicanal.conversations.models import Conversation, Message
from omnicanal.conversations.notify import announce, message_data
from omnicanal.customer360 import as_json, customer_360
from omnicanal.customers.identities import InvalidIdentity, normalize
from omnicanal.db import utcnow
from omnicanal.errors import NotFound
from omnicanal.routing.models import TeamMember
from omnicanal.timeline.service import record_event
from omnicanal.web import WriteSession, require

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
calls_router = APIRouter(prefix="/api/v1", tags=["calls"])
MISSED = frozenset({"no-answer", "busy", "failed", "canceled"})


def _twiml(channel: Any, status_url: str) -> Response:
    language = quoteattr(channel.get("language", "es-ES"))
    parts = [f"<Say language={language}>{escape(channel.get('greeting', ''))}</Say>"]
    if channel.get("forward_to"):
        parts.append(f'<Dial timeout="25" action={quoteattr(status_url)}>{escape(channel["forward_to"])}</Dial>')
    body = '<?xml version="1.0" encoding="UTF-8"?><Response>' + "".join(parts) + "</Response>"
    return Response(body, media_type="application/xml")


@router.post("/webhooks/voice/{channel_id}", summary="Incoming call (Twilio-compatible voice webhook)")
async def incoming(channel_id: str, request: Request) -> Response:
    channel = await configured(request, channel_id, "voice")
    form = await verified_form(request, channel)
    status_url = f"{channel.get('public_url') or str(request.base_url).rstrip('/')}/webhooks/voice/{channel.id}/status"
    sid, caller = form.get("CallSid"), form.get("From", "")
    try:
        phone = normalize("phone", caller, request.app.state.settings.default_region)
    except InvalidIdentity:
        phone = None  # a withheld number: the call is answered, but there is nobody to file it under
    if sid and phone:
        item = InboundInput(
            channel="phone", identities=[("phone", phone)], customer_id=None, text="📞 Llamada entrante",
            attachments=[{"kind": "call", "direction": "inbound", "status": form.get("CallStatus", "ringing"),
                          "call_sid": sid, "from": phone, "to": form.get("To")}],
            external_id=sid, occurred_at=utcnow(), channel_instance_id=channel.id,
        )  # fmt: skip
        (result,) = await store(request, [item])
        if result.conversation_id is not None and not result.duplicate:
            await in_writer(request, _screen_pop, [(sid, result.customer_id, result.conversation_id)])
    return _twiml(channel, status_url)


def _screen_pop(session: Session, items: Sequence[tuple[str, uuid.UUID, uuid.UUID]]) -> list[None]:
    """``call.ringing`` to the agents of the conversation's team (or its agent), with the customer 360."""
    for call_sid, customer_id, conversation_id in items:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        agents = set()
        if conversation.team_id is not None:
            agents = {str(u) for u in session.scalars(select(TeamMember.user_id).where(
                TeamMember.team_id == conversation.team_id))}  # fmt: skip
        if conversation.assignee_id is not None:
            agents.add(str(conversation.assignee_id))
        view = as_json(customer_360(session, customer_id=customer_id, events=10))
        announce(session, "call.ringing", {
            "call_sid": call_sid, "customer_id": str(customer_id), "conversation_id": str(conversation_id),
            "team_id": str(conversation.team_id) if conversation.team_id else None, "agents": sorted(agents),
            "customer_360": view,
        })  # fmt: skip
    return [None for _ in items]


@router.post("/webhooks/voice/{channel_id}/status", summary="Call status callback / <Dial> action")
async def status_callback(channel_id: str, request: Request) -> Response:
    channel = await configured(request, channel_id, "voice")
    form = await verified_form(request, channel)
    sid = form.get("CallSid")
    status = form.get("DialCallStatus") or form.get("CallStatus", "")
    if sid and status in MISSED | {"completed"}:
        duration = int(form.get("DialCallDuration") or form.get("CallDuration") or 0)
        await in_writer(request, _log_call, [(sid, status, duration, form.get("RecordingUrl"))])
    if "DialCallStatus" in form:  # the <Dial> action: the call continues with what we answer
        return Response('<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>',
                        media_type="application/xml")  # fmt: skip
    return Response(status_code=204)


def _call_message(session: Session, call_sid: str) -> Message | None:
    return session.scalar(select(Message).where(Message.channel == "phone", Message.external_id == call_sid))


def _log_call(session: Session, items: Sequence[tuple[str, str, int, str | None]]) -> list[None]:
    for call_sid, status, duration, recording_url in items:
        message = _call_message(session, call_sid)
        if message is None:
            log.info("status for a call we did not take (%s)", call_sid[:40])
            continue
        call = dict(message.attachments[0]) if message.attachments else {"kind": "call"}
        if call.get("final"):
            continue  # the status callback and the <Dial> action both report the end: log it once
        missed = status in MISSED or duration == 0
        call |= {"status": "missed" if missed else "completed", "duration_s": duration, "final": True}
        if recording_url:
            call["recording_url"] = recording_url
        minutes, seconds = divmod(duration, 60)
        message.text = "📞 Llamada perdida" if missed else f"📞 Llamada atendida · {minutes}:{seconds:02d}"
        message.attachments = [call]
        flag_modified(message, "attachments")
        message.updated_at = utcnow()
        record_event(
            session, customer_id=message.customer_id, type="call.missed" if missed else "call.completed",
            channel="call_center", occurred_at=utcnow(),
            properties={"conversation_id": str(message.conversation_id), "call_sid": call_sid,
                        "direction": call.get("direction"), "duration_s": duration, "recording_url": recording_url},
        )  # fmt: skip
        if missed:
            request_callback(
                session, customer_id=message.customer_id, reason="missed_call", phone=call.get("from"),
                conversation_id=message.conversation_id, source_ref=call_sid,
            )  # fmt: skip
        announce(session, "message.updated", message_data(message) | {"call": call})
    return [None for _ in items]


class CallLogIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disposition: str = Field(max_length=50, examples=["resolved", "follow_up", "wrong_number"])
    notes: str = Field(default="", max_length=4000)
    agent_id: uuid.UUID | None = None


@calls_router.post("/calls/{call_sid}/log")
def log_call(
    call_sid: str, data: CallLogIn, session: WriteSession,
    principal: Annotated[Principal, Depends(require(Permission.CONVERSATIONS_WRITE))],
) -> dict[str, Any]:  # fmt: skip
    """The agent's wrap-up of a call: disposition and notes, on the call's message and the timeline."""
    message = _call_message(session, call_sid)
    if message is None:
        raise NotFound(f"no call {call_sid}")
    agent = str(data.agent_id) if data.agent_id else (str(principal.id) if principal.kind == "user" else None)
    call = dict(message.attachments[0]) if message.attachments else {"kind": "call"}
    call |= {"disposition": data.disposition, "notes": data.notes, "agent_id": agent}
    message.attachments = [call]
    flag_modified(message, "attachments")
    message.updated_at = utcnow()
    record_event(
        session, customer_id=message.customer_id, type="call.logged", channel="call_center", occurred_at=utcnow(),
        properties={"call_sid": call_sid, "disposition": data.disposition, "agent_id": agent,
                    "conversation_id": str(message.conversation_id)},
    )  # fmt: skip
    announce(session, "message.updated", message_data(message) | {"call": call})
    return {"message_id": str(message.id), "conversation_id": str(message.conversation_id), "call": call}


VOICE = register(
    ChannelType(
        name="voice",
        label="Voice",
        keys=(
            ConfigKey("account_sid", required=True),
            ConfigKey("auth_token", required=True, secret=True, help="signs the call webhooks"),
            ConfigKey("public_url", kind="url", help="this server's public base URL, as the provider calls it"),
            ConfigKey("greeting", default="Gracias por llamar. Le atendemos enseguida."),
            ConfigKey("language", default="es-ES"),
            ConfigKey("forward_to", help="where to ring: the agents' number or SIP address"),
            ConfigKey("api_base_url", kind="url", default="https://api.twilio.com"),
        ),
        routers=(router, calls_router, callbacks_router),
        webhook_paths=("/webhooks/voice/{id}", "/webhooks/voice/{id}/status"),
    )
)
