"""The callback queue: missed calls and callback requests (e.g. from the web chat) in one list."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from omnicanal.access.roles import Permission
from omnicanal.access.service import Principal
from omnicanal.channels.models import CallbackTask
from omnicanal.conversations.notify import announce
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.web import ReadSession, WriteSession, require

router = APIRouter(prefix="/api/v1", tags=["calls"])
Reader = Annotated[Principal, Depends(require(Permission.CONVERSATIONS_READ))]
Writer = Annotated[Principal, Depends(require(Permission.CONVERSATIONS_WRITE))]


def task_data(task: CallbackTask) -> dict[str, Any]:
    return {
        "id": str(task.id), "customer_id": str(task.customer_id), "phone": task.phone, "reason": task.reason,
        "conversation_id": str(task.conversation_id) if task.conversation_id else None, "notes": task.notes,
        "status": task.status, "created_at": task.created_at.isoformat(),
        "done_at": task.done_at.isoformat() if task.done_at else None, "done_by": task.done_by,
    }  # fmt: skip


def request_callback(
    session: Session, *, customer_id: uuid.UUID, reason: str, phone: str | None = None,
    conversation_id: uuid.UUID | None = None, notes: str = "", source_ref: str | None = None,
) -> CallbackTask:  # fmt: skip
    """Queue a call back; ``source_ref`` (a CallSid) makes a repeated request a no-op."""
    customer = get_customer(session, customer_id, follow_merges=True)
    if source_ref is not None:
        existing = session.scalar(select(CallbackTask).where(CallbackTask.source_ref == source_ref))
        if existing is not None:
            return existing
    task = CallbackTask(
        customer_id=customer.id, source_customer_id=customer.id, conversation_id=conversation_id, phone=phone,
        reason=reason, source_ref=source_ref, notes=notes, status="open", created_at=utcnow(),
    )  # fmt: skip
    try:
        with session.begin_nested():
            session.add(task)
    except IntegrityError:  # the same call reported twice at once
        found = session.scalar(select(CallbackTask).where(CallbackTask.source_ref == source_ref))
        assert found is not None
        return found
    announce(session, "callback.requested", task_data(task))
    return task


class CallbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: uuid.UUID
    phone: str | None = Field(default=None, max_length=32)
    reason: str = Field(default="requested", max_length=32, examples=["web_request"])
    conversation_id: uuid.UUID | None = None
    notes: str = Field(default="", max_length=2000)


@router.get("/callbacks")
def list_callbacks(session: ReadSession, _: Reader, status: str = "open", limit: int = 100) -> list[dict[str, Any]]:
    """The callback queue, oldest first."""
    if status not in ("open", "done"):
        raise ValidationFailed.on_field("status", "must be open or done")
    rows = session.scalars(
        select(CallbackTask).where(CallbackTask.status == status).order_by(CallbackTask.created_at).limit(limit)
    )
    return [task_data(task) for task in rows]


@router.post("/callbacks", status_code=201)
def create_callback(data: CallbackIn, session: WriteSession, _: Writer) -> dict[str, Any]:
    task = request_callback(
        session, customer_id=data.customer_id, reason=data.reason, phone=data.phone,
        conversation_id=data.conversation_id, notes=data.notes,
    )  # fmt: skip
    return task_data(task)


@router.post("/callbacks/{task_id}/done")
def complete_callback(task_id: uuid.UUID, session: WriteSession, principal: Writer) -> dict[str, Any]:
    task = session.get(CallbackTask, task_id, with_for_update=True)
    if task is None:
        raise NotFound(f"callback {task_id} not found")
    if task.status == "done":
        raise Conflict("this callback is already done")
    task.status, task.done_at, task.done_by = "done", utcnow(), principal.label
    session.flush()
    announce(session, "callback.done", task_data(task))
    return task_data(task)
