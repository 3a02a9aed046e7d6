from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.errors import NotFound
from omnicanal.outbox import service
from omnicanal.outbox.models import OutboxItem
from omnicanal.outbox.schemas import AttemptOut, OutboxItemDetail, OutboxItemOut, OutboxPage
from omnicanal.web import ReadSession, WriteSession, require

router = APIRouter(prefix="/api/v1", tags=["outbox"])
Manager = Annotated[Principal, Depends(require(Permission.OUTBOX_MANAGE))]


@router.get("/outbox", response_model=OutboxPage)
def list_outbox(
    session: ReadSession, _: Manager, state: str | None = None, kind: str | None = None, limit: int = 50,
    cursor: str | None = None,
) -> OutboxPage:  # fmt: skip
    rows, next_cursor = service.list_items(session, state=state, kind=kind, limit=limit, cursor=cursor)
    return OutboxPage(
        items=[OutboxItemOut.model_validate(r, from_attributes=True) for r in rows], next_cursor=next_cursor
    )


def detail(session: ReadSession, item: OutboxItem) -> OutboxItemDetail:
    attempts = [AttemptOut.model_validate(a, from_attributes=True) for a in service.attempts_of(session, item.id)]
    return OutboxItemDetail(
        **OutboxItemOut.model_validate(item, from_attributes=True).model_dump(), attempt_log=attempts
    )


@router.get("/outbox/{item_id}", response_model=OutboxItemDetail)
def get_item(item_id: uuid.UUID, session: ReadSession, _: Manager) -> OutboxItemDetail:
    item = session.get(OutboxItem, item_id)
    if item is None:
        raise NotFound(f"outbox item {item_id} not found")
    return detail(session, item)


@router.post("/outbox/{item_id}/retry", response_model=OutboxItemOut)
def retry_item(item_id: uuid.UUID, session: WriteSession, _: Manager) -> OutboxItemOut:
    from omnicanal.conversations.delivery import update_delivery_status

    item = service.retry(session, item_id=item_id)
    if item.message_id is not None:
        # as the console's retry: the message is on its way again, "queued" until the provider takes it
        update_delivery_status(session, message_id=item.message_id, status="queued")
    return OutboxItemOut.model_validate(item, from_attributes=True)
