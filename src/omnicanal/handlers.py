"""Cross-domain reactions, wired once when the app or a worker starts."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from omnicanal import dispatch
from omnicanal.timeline.service import record_event


def _profile_updated(session: Session, payload: dict[str, Any]) -> None:
    record_event(
        session,
        customer_id=payload["customer_id"],
        type="profile.updated",
        channel="console" if str(payload.get("actor", "")).startswith("user:") else "api",
        properties={"changed": payload["changed"]},
    )


def _merged(session: Session, payload: dict[str, Any]) -> None:
    record_event(
        session,
        customer_id=payload["survivor_id"],
        type="customer.merged",
        channel="system",
        properties={
            "merge_id": str(payload["merge_id"]),
            "merged_id": str(payload["merged_id"]),
            "reason": payload["reason"],
        },
    )


def _merge_undone(session: Session, payload: dict[str, Any]) -> None:
    record_event(
        session,
        customer_id=payload["survivor_id"],
        type="customer.merge_undone",
        channel="system",
        properties={"merge_id": str(payload["merge_id"]), "merged_id": str(payload["merged_id"])},
    )


def register() -> None:
    dispatch.subscribe("customer.updated", _profile_updated)
    dispatch.subscribe("customer.merged", _merged)
    dispatch.subscribe("customer.merge_undone", _merge_undone)
