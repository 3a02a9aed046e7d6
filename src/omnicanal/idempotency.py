"""``Idempotency-Key`` for POSTs that create something.

The stored response commits in the same transaction as the change it describes, so a
retried request either finds the finished result or runs again from scratch.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
from fastapi import Request
from sqlalchemy import String, Text, UniqueConstraint, Uuid, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from omnicanal.access.service import Principal
from omnicanal.db import Base, JSONType, UTCDateTime, utcnow
from omnicanal.driver_sql import bulk_insert, fetch_rows, json_from_db
from omnicanal.errors import Conflict, ValidationFailed
from omnicanal.web import FastJSONResponse


class IdempotentRequest(Base):
    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("principal", "key", name="uq_idempotent_requests_principal_key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response: Mapped[Any] = mapped_column(JSONType)
    path: Mapped[str] = mapped_column(Text)
    # the customer the stored response describes, so erasure can remove it
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


_T = TypeVar("_T")


def once_more_if_the_key_raced(request: Request, transaction: Callable[[], _T]) -> _T:
    """Run ``transaction`` (a whole write transaction around :func:`run_idempotent`); run it once more if it lost
    the race for its ``Idempotency-Key``.

    Requests sent at once with one key all miss it in their lookup; the first to commit stores its answer and
    the others fail on the unique key. Run again, each finds that answer and repeats it, instead of a 500 for
    a client that only retried.
    """
    try:
        return transaction()
    except IntegrityError as exc:
        if request.headers.get("idempotency-key") is None or IdempotentRequest.__tablename__ not in str(exc.orig):
            raise
    return transaction()


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a request's content under its key, computed ahead (:func:`fingerprint_of`)."""

    value: str


def fingerprint_of(request: Request, body: Any) -> Fingerprint:
    """The fingerprint of ``body`` sent to this request's method and path.

    The order path computes it on the event loop before it hands the request to the writer, so that the work
    is not done inside the writers' turn (bench/commerce.py, K1)."""
    path: str = request.scope["path"]
    content = request.method.encode() + path.encode() + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return Fingerprint(hashlib.sha256(content).hexdigest())


def run_idempotent(
    request: Request,
    session: Session,
    principal: Principal,
    body: Any,
    produce: Callable[[], tuple[int, Any]],
    *,
    customer_of: Callable[[Any], Any] | None = None,
) -> FastJSONResponse:
    """Run ``produce`` once per ``Idempotency-Key``; repeat the stored answer afterwards.

    ``body`` is what the request asked for, or its :class:`Fingerprint` computed ahead (only read with a key).

    ``customer_of`` names the customer a response is about, when it holds personal data.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        status, content = produce()
        return FastJSONResponse(content, status_code=status)
    if not 1 <= len(key) <= 200:
        raise ValidationFailed.on_field("Idempotency-Key", "must have 1 to 200 characters")
    path: str = request.scope["path"]  # what request.url.path gives for these paths, without building the URL
    fingerprint = body.value if isinstance(body, Fingerprint) else fingerprint_of(request, body).value
    # a prebuilt statement and a driver insert: every order and payment created with a key runs both
    # (bench/commerce.py, K1)
    session.flush()
    stored = fetch_rows(session, _STORED, {"b_principal": principal.label, "b_key": key})
    if stored:
        stored_fingerprint, stored_status, stored_response = stored[0]
        if stored_fingerprint != fingerprint:
            raise Conflict("this Idempotency-Key was already used for a different request")
        replayed = {"Idempotent-Replayed": "true"}
        return FastJSONResponse(json_from_db(stored_response), status_code=stored_status, headers=replayed)
    status, content = produce()
    row = {
        "principal": principal.label,
        "key": key,
        "fingerprint": fingerprint,
        "status_code": status,
        "response": content,
        "path": path,
        "customer_id": uuid.UUID(str(customer_of(content))) if customer_of else None,
        "created_at": utcnow(),
    }
    bulk_insert(session, IdempotentRequest, [row])
    # orjson: callers hold the write turn until this returns (an order: 6 µs to render, 46 with json.dumps)
    return FastJSONResponse(content, status_code=status)


_stored = IdempotentRequest.__table__.c
_STORED = select(_stored.fingerprint, _stored.status_code, _stored.response).where(
    _stored.principal == bindparam("b_principal"), _stored.key == bindparam("b_key")
)
