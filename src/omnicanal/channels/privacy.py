"""Push tokens are personal data: exported with the customer and erased with them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from omnicanal.channels.models import CallbackTask, PushDevice
from omnicanal.customers.models import Identity


def _devices(tree: set[uuid.UUID]) -> Any:
    return select(Identity.value).where(Identity.customer_id.in_(tree), Identity.type == "device_id")


def export_push_devices(session: Session, tree: set[uuid.UUID]) -> list[dict[str, Any]]:
    rows = session.scalars(select(PushDevice).where(PushDevice.device_id.in_(_devices(tree))))
    return [{"device_id": r.device_id, "platform": r.platform, "updated_at": r.updated_at} for r in rows]


def erase_push_devices(session: Session, tree: set[uuid.UUID]) -> None:
    session.execute(delete(PushDevice).where(PushDevice.device_id.in_(_devices(tree))))


def export_callbacks(session: Session, tree: set[uuid.UUID]) -> list[dict[str, Any]]:
    rows = session.scalars(select(CallbackTask).where(CallbackTask.customer_id.in_(tree)))
    return [{"reason": r.reason, "phone": r.phone, "notes": r.notes, "status": r.status, "created_at": r.created_at}
            for r in rows]  # fmt: skip


def erase_callbacks(session: Session, tree: set[uuid.UUID]) -> None:
    session.execute(
        delete(CallbackTask).where(CallbackTask.customer_id.in_(tree) | CallbackTask.source_customer_id.in_(tree))
    )


def register() -> None:
    from omnicanal.privacy import service as privacy

    privacy.register("push_devices", exporter=export_push_devices, eraser=erase_push_devices, first=True)
    privacy.register("callbacks", exporter=export_callbacks, eraser=erase_callbacks)
