from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow
from omnicanal.errors import DomainError, NotFound, ValidationFailed
from omnicanal.timeline.schemas import BatchResult, EventAccepted, EventIn, TimelinePage
from omnicanal.timeline.service import EventInput, event_out, prepare_event, timeline
from omnicanal.timeline.writer import IngestWriter
from omnicanal.web import ReadSession, authorize, json_body, require, served_by

router = APIRouter(prefix="/api/v1", tags=["events"])

Reader = Annotated[Principal, Depends(require(Permission.CUSTOMERS_READ))]

_EVENTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/EventIn"},
                        {
                            "type": "object",
                            "properties": {
                                "events": {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"}}
                            },
                            "required": ["events"],
                        },
                    ]
                }
            }
        },
    }
}


def _json(content: Any, status_code: int) -> Response:
    # UUIDs are left to orjson, which writes their text itself at a sixth of the cost of str() (bench, B1)
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


async def post_events(request: Request) -> Response:
    """Store one event, or a batch of up to 1,000 (``{"events": [...]}``), resolving identities."""
    await authorize(request, Permission.EVENTS_WRITE)
    state = request.app.state
    settings = state.settings
    body: Any = await json_body(request)
    now = utcnow()
    writer: IngestWriter = state.ingest_writer
    if isinstance(body, dict) and "events" in body and "id" not in body:
        items = body["events"]
        if not isinstance(items, list):
            raise ValidationFailed.on_field("events", "must be a list of events")
        if not items:
            raise ValidationFailed.on_field("events", "must hold at least one event")
        if len(items) > settings.max_batch_events:
            raise ValidationFailed.on_field("events", f"holds {len(items)} events; at most {settings.max_batch_events}")
        prepared: list[EventInput] = []
        positions: list[int] = []
        results: list[dict[str, Any] | None] = [None] * len(items)
        for index, raw in enumerate(items):
            try:
                prepared.append(prepare_event(raw, settings=settings, now=now, field_prefix=f"events[{index}]."))
                positions.append(index)
            except DomainError as exc:
                results[index] = {"index": index, "error": exc.problem()}
        stored = await writer.submit(prepared) if prepared else []
        for index, outcome in zip(positions, stored, strict=True):
            if outcome.error is not None:
                results[index] = {"index": index, "event_id": outcome.event_id, "error": outcome.error.problem()}
            else:
                results[index] = {
                    "index": index,
                    "event_id": outcome.event_id,
                    "customer_id": outcome.customer_id,
                    "duplicate": outcome.duplicate,
                }
        return _json({"results": results}, 200)
    if not isinstance(body, dict):
        raise ValidationFailed.on_field("body", 'must be one event object or {"events": [...]}')
    event = prepare_event(body, settings=settings, now=now)
    (outcome,) = await writer.submit([event])
    if outcome.error is not None:
        if isinstance(outcome.error, NotFound):
            raise ValidationFailed.on_field("customer_id", str(outcome.error.detail))
        raise outcome.error
    return _json(
        {"event_id": outcome.event_id, "customer_id": outcome.customer_id, "duplicate": outcome.duplicate},
        200 if outcome.duplicate else 201,
    )


router.add_api_route(
    "/events",
    post_events,
    methods=["POST"],
    openapi_extra=_EVENTS_BODY,
    responses={
        201: {"model": EventAccepted, "description": "stored (a batch answers BatchResult)"},
        200: {"model": EventAccepted, "description": "the event id was already stored: nothing new"},
    },
    route_class_override=served_by(post_events),
)

# Keep the schemas in components so the oneOf above resolves.
_ = (EventIn, BatchResult)


@router.get("/customers/{customer_id}/timeline", response_model=TimelinePage)
def get_timeline(
    customer_id: uuid.UUID,
    session: ReadSession,
    _: Reader,
    channel: str | None = None,
    type: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> TimelinePage:
    customer = get_customer(session, customer_id)
    rows, next_cursor = timeline(
        session, customer_id=customer.id, channel=channel, type=type, limit=limit, cursor=cursor
    )
    return TimelinePage(items=[event_out(row) for row in rows], next_cursor=next_cursor)
