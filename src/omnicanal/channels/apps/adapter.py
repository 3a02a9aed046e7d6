"""``POST /webhooks/api/{channel_id}``: one key per integration, plus an optional HMAC of the body.

Authentication: ``Authorization: Bearer <api_key>`` (or ``X-Api-Key``). When the channel has a
``signing_secret``, every request must also carry ``X-Omnicanal-Timestamp`` (Unix seconds) and
``X-Omnicanal-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">``; a timestamp more
than ``tolerance_seconds`` away is refused, so a captured request cannot be replayed later.
Body: ``{"messages": [...], "events": [...], "push_tokens": [...]}`` (each list optional).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from omnicanal.channels.inbound import configured, hmac_hex, in_writer, raw_body, rejected, same, store
from omnicanal.channels.models import PushDevice
from omnicanal.channels.registry import ChannelType, ConfigKey, register
from omnicanal.channels.service import ConfiguredChannel
from omnicanal.conversations.api import prepare_inbound
from omnicanal.conversations.schemas import InboundMessageIn
from omnicanal.db import utcnow
from omnicanal.errors import DomainError, FieldError, ValidationFailed
from omnicanal.storage import discard_attachments
from omnicanal.timeline.service import EventInput, prepare_event
from omnicanal.timeline.writer import IngestWriter
from omnicanal.web import FastJSONResponse

router = APIRouter(tags=["webhooks"])
MAX_ITEMS = 500


class PushTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=200)
    token: str = Field(min_length=1, max_length=4096)
    platform: str = Field(default="", max_length=16)


def authenticate(request: Request, channel: ConfiguredChannel, body: bytes) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key", "")
    if not key:
        raise rejected(channel, "no API key", status=401)
    if not same(channel["api_key"], key):
        raise rejected(channel, "wrong API key", status=401)
    secret = channel.get("signing_secret")
    if not secret:
        return
    stamp, given = request.headers.get("x-omnicanal-timestamp", ""), request.headers.get("x-omnicanal-signature", "")
    if not stamp or not given:
        raise rejected(channel, "no signature", status=401)
    try:
        age = abs(time.time() - int(stamp))
    except ValueError:
        raise rejected(channel, "bad timestamp") from None
    if age > int(channel.get("tolerance_seconds", 300)):
        raise rejected(channel, "timestamp outside the tolerance (replay?)")
    if not same("sha256=" + hmac_hex(secret, stamp.encode() + b"." + body), given):
        raise rejected(channel, "bad signature")


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name) or []
    if not isinstance(value, list):
        raise ValidationFailed.on_field(name, "must be a list")
    if len(value) > MAX_ITEMS:
        raise ValidationFailed.on_field(name, f"holds {len(value)} items; at most {MAX_ITEMS}")
    return value


def _problem(exc: DomainError | ValidationError, prefix: str) -> dict[str, Any]:
    if isinstance(exc, ValidationError):
        errors = [FieldError(prefix + ".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        exc = ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)
    return exc.problem()


def _save_tokens(session: Session, items: Sequence[tuple[PushTokenIn, Any]]) -> list[None]:
    now = utcnow()
    latest = {token.device_id: (token, channel_id) for token, channel_id in items}
    session.execute(delete(PushDevice).where(PushDevice.device_id.in_(latest)))
    session.execute(
        insert(PushDevice),
        [{"device_id": t.device_id, "token": t.token, "platform": t.platform, "channel_instance_id": channel_id,
          "updated_at": now} for t, channel_id in latest.values()],
    )  # fmt: skip
    return [None for _ in items]


@router.post("/webhooks/api/{channel_id}", summary="Messages, events and push tokens from an app, POS or system")
async def incoming(channel_id: str, request: Request) -> Response:
    channel = await configured(request, channel_id, "api")
    body_bytes = await raw_body(request)
    authenticate(request, channel, body_bytes)
    try:
        body = orjson.loads(body_bytes)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed.on_field("body", f"is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ValidationFailed.on_field("body", 'must be {"messages": [...], "events": [...], "push_tokens": [...]}')
    tokens: list[tuple[PushTokenIn, Any]] = []
    for index, raw in enumerate(_list(body, "push_tokens")):  # checked before anything is stored
        try:
            tokens.append((PushTokenIn.model_validate(raw), channel.id))
        except ValidationError as exc:
            problem = _problem(exc, f"push_tokens[{index}].")
            raise ValidationFailed(problem["detail"], errors=[FieldError(**e) for e in problem["errors"]]) from None
    settings = request.app.state.settings
    allowed = channel.get("message_channels") or ["app"]
    now = utcnow()
    answer: dict[str, Any] = {}

    message_results: list[dict[str, Any]] = []
    prepared, positions = [], []
    for index, raw in enumerate(_list(body, "messages")):
        prefix = f"messages[{index}]."
        try:
            if isinstance(raw, dict):
                raw = {"channel": allowed[0]} | raw
            data = InboundMessageIn.model_validate(raw)
            if data.channel not in allowed:
                raise ValidationFailed.on_field(prefix + "channel", f"this integration posts on: {', '.join(allowed)}")
            item = prepare_inbound(data, settings)
            item.channel_instance_id = channel.id
            prepared.append(item)
            positions.append(index)
            message_results.append({"index": index})
        except (DomainError, ValidationError) as exc:
            message_results.append({"index": index, "error": _problem(exc, prefix)})
    try:
        stored = await store(request, prepared)
    except BaseException:
        for item in prepared:
            discard_attachments(item.attachments, settings=settings)
        raise
    for index, item, result in zip(positions, prepared, stored, strict=True):
        if result.error is not None or result.duplicate:
            discard_attachments(item.attachments, settings=settings)  # the files of a message not kept
        if result.error is not None:
            message_results[index]["error"] = result.error.problem()
        else:
            message_results[index] |= {"message_id": str(result.message_id), "duplicate": result.duplicate,
                                       "conversation_id": str(result.conversation_id),
                                       "customer_id": str(result.customer_id)}  # fmt: skip
    if message_results:
        answer["messages"] = message_results

    event_results: list[dict[str, Any]] = []
    events: list[EventInput] = []
    event_positions: list[int] = []
    for index, raw in enumerate(_list(body, "events")):
        try:
            events.append(prepare_event(raw, settings=settings, now=now, field_prefix=f"events[{index}]."))
            event_positions.append(index)
            event_results.append({"index": index})
        except DomainError as exc:
            event_results.append({"index": index, "error": exc.problem()})
    writer: IngestWriter = request.app.state.ingest_writer
    for index, outcome in zip(event_positions, await writer.submit(events) if events else [], strict=True):
        if outcome.error is not None:
            event_results[index]["error"] = outcome.error.problem()
        else:
            event_results[index] |= {"event_id": outcome.event_id, "customer_id": str(outcome.customer_id),
                                     "duplicate": outcome.duplicate}  # fmt: skip
    if event_results:
        answer["events"] = event_results

    if tokens:
        await in_writer(request, _save_tokens, tokens)
        answer["push_tokens"] = len(tokens)
    return FastJSONResponse(answer, status_code=200)


def _check(values: dict[str, Any]) -> None:
    from omnicanal.conversations.channels import MESSAGE_CHANNELS

    unknown = [name for name in values.get("message_channels") or () if name not in MESSAGE_CHANNELS]
    if unknown:
        raise ValidationFailed.on_field("config.message_channels", f"unknown channels: {', '.join(unknown)}")


API = register(
    ChannelType(
        name="api",
        label="App / POS API",
        keys=(
            ConfigKey("api_key", required=True, secret=True, help="sent as Authorization: Bearer <key>"),
            ConfigKey("signing_secret", secret=True, help="when set, every request must be signed (HMAC-SHA256)"),
            ConfigKey("tolerance_seconds", kind="int", default=300),
            ConfigKey("message_channels", kind="list", default=("app",), help="app, store, ..."),
        ),
        routers=(router,),
        check=_check,
        webhook_paths=("/webhooks/api/{id}",),
    )
)
