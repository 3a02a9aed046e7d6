"""Purchase codes printed on products: generated in bulk, stored hashed, single use, guarded against guessing.

A code has 12 characters from a 32-letter alphabet (60 bits). Each wrong code counts against the customer;
after ``loyalty_code_failures_max`` wrong codes within ``loyalty_code_lockout_minutes`` every attempt is
refused (429) until the window has passed. The failures commit even though the request fails, which is why
:func:`redeem_code` returns its refusal instead of raising it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from omnicanal.db import utcnow
from omnicanal.errors import DomainError, ValidationFailed
from omnicanal.loyalty.earning import Earned, earn_direct, programme
from omnicanal.loyalty.models import LoyaltyCodeFailure, LoyaltyPurchaseCode
from omnicanal.loyalty.rewards import new_code

CODE_LENGTH = 12


class TooManyAttempts(DomainError):
    status = 429
    slug = "too-many-attempts"
    title = "Too many wrong codes"


class CodeRefused(DomainError):
    status = 422
    slug = "code-refused"
    title = "Code not accepted"


def _normalized(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def code_hash(code: str) -> str:
    return hashlib.sha256(_normalized(code).encode()).hexdigest()


def generate(session: Session, *, batch: str, count: int, points: int) -> list[str]:
    """``count`` new codes worth ``points``; the plain codes are returned once and never stored."""
    if not 1 <= count <= 100_000:
        raise ValidationFailed.on_field("count", "between 1 and 100000")
    if points <= 0:
        raise ValidationFailed.on_field("points", "must be positive")
    codes = {new_code("", CODE_LENGTH) for _ in range(count)}
    while len(codes) < count:
        codes.add(new_code("", CODE_LENGTH))
    now = utcnow()
    session.execute(
        LoyaltyPurchaseCode.__table__.insert(),  # type: ignore[attr-defined]
        [{"code_hash": code_hash(c), "batch": batch, "points": points, "created_at": now} for c in codes],
    )
    return sorted(codes)


@dataclass(frozen=True)
class CodeOutcome:
    earned: Earned | None = None
    refusal: DomainError | None = None


def redeem_code(session: Session, *, customer_id: uuid.UUID, code: str, now: datetime | None = None) -> CodeOutcome:
    now = now or utcnow()
    settings = programme(session)
    window_start = now - timedelta(minutes=settings.loyalty_code_lockout_minutes)
    failures = (
        session.scalar(
            select(func.count())
            .select_from(LoyaltyCodeFailure)
            .where(LoyaltyCodeFailure.customer_id == customer_id, LoyaltyCodeFailure.attempted_at >= window_start)
        )
        or 0
    )
    if failures >= settings.loyalty_code_failures_max:
        return CodeOutcome(
            refusal=TooManyAttempts(
                f"too many wrong codes; try again in {settings.loyalty_code_lockout_minutes} minutes"
            )
        )
    digest = code_hash(code)
    row = session.get(LoyaltyPurchaseCode, digest)
    taken = 0
    if row is not None:
        taken = session.execute(
            update(LoyaltyPurchaseCode)
            .where(LoyaltyPurchaseCode.code_hash == digest, LoyaltyPurchaseCode.used_at.is_(None))
            .values(used_at=now, used_by=customer_id)
        ).rowcount  # type: ignore[attr-defined]
    if row is None or taken != 1:
        session.add(LoyaltyCodeFailure(customer_id=customer_id, source_customer_id=customer_id, attempted_at=now))
        detail = "this code was already used" if row is not None else "this code is not valid"
        return CodeOutcome(refusal=CodeRefused(detail))
    earned = earn_direct(
        session,
        customer_id=customer_id,
        points=row.points,
        reason="purchase_code",
        source=f"code:{digest[:16]}",
        key=f"code:{digest}",
        now=now,
    )
    return CodeOutcome(earned=earned)
