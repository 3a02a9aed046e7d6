"""Background loyalty work: expiry (every run), then hourly the tier review, birthdays and expiry notices."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from omnicanal.customers.models import Customer
from omnicanal.db import Database, utcnow
from omnicanal.loyalty import keys, ledger
from omnicanal.loyalty.earning import LoyaltyEvent, earn_events, programme
from omnicanal.loyalty.models import LoyaltyLot
from omnicanal.loyalty.notifications import notify_many
from omnicanal.loyalty.tiers import review

HOURLY_SECONDS = 3600.0
_next_hourly = 0.0


def born_on(session: Session, now: datetime) -> list[uuid.UUID]:
    """Who was born on this day (trait ``birthday``, YYYY-MM-DD): a scan of every customer."""
    suffix = now.strftime("-%m-%d")
    return list(
        session.scalars(
            select(Customer.id).where(
                Customer.traits["birthday"].as_string().like(f"%{suffix}"),
                Customer.merged_into_id.is_(None),
                Customer.erased_at.is_(None),
            )
        )
    )


def birthdays(session: Session, *, now: datetime | None = None, born: list[uuid.UUID] | None = None) -> int:
    """A ``birthday`` loyalty event for everyone born on this day, once a year."""
    now = now or utcnow()
    ids = born_on(session, now) if born is None else born
    events = [LoyaltyEvent(f"birthday:{cid}:{now.year}", cid, "birthday", {"year": now.year}, "system") for cid in ids]
    return len(earn_events(session, events, now=now))


_next_birthdays = 0.0


def hourly_birthdays(db: Database) -> int:
    """For the worker's schedule: the birthdays of the day, once an hour (someone who joins on their
    birthday is paid the same day).

    The scan reads every customer (seconds with a million of them): it runs in a read transaction, and
    only the few events found are written, so the writers (ingest, messages, orders) never wait on it.
    Paying twice is impossible (one claim per customer and year), so several processes may all run it.
    """
    global _next_birthdays
    if time.monotonic() < _next_birthdays:
        return 0
    _next_birthdays = time.monotonic() + HOURLY_SECONDS
    now = utcnow()
    with db.read() as session:
        born = born_on(session, now)
    with db.write() as session:
        return birthdays(session, now=now, born=born)


def expiring_notices(session: Session, *, now: datetime | None = None) -> int:
    """One notice per lot that will expire within the notice period, grouped per customer."""
    now = now or utcnow()
    horizon = now + timedelta(days=programme(session).loyalty_expiring_notice_days)
    rows = session.execute(
        select(LoyaltyLot.id, LoyaltyLot.customer_id, LoyaltyLot.remaining, LoyaltyLot.expires_at).where(
            LoyaltyLot.expires_at > now, LoyaltyLot.expires_at <= horizon, LoyaltyLot.remaining > 0
        )
    ).all()
    claimed = keys.claim_many(session, [f"expiring:{lot_id}" for lot_id, *_ in rows], now=now)
    per_customer: dict[object, list[tuple[int, datetime]]] = {}
    for lot_id, customer_id, remaining, expires_at in rows:
        if f"expiring:{lot_id}" in claimed and expires_at is not None:
            per_customer.setdefault(customer_id, []).append((remaining, expires_at))
    notices = [
        (
            cid,
            "points_expiring",
            {"points": sum(p for p, _ in lots), "first_expires_at": min(w for _, w in lots).isoformat()},
        )
        for cid, lots in per_customer.items()
    ]
    return notify_many(session, notices)  # type: ignore[arg-type]


def run(
    session: Session, *, now: datetime | None = None, hourly: bool = True, with_birthdays: bool = True
) -> dict[str, int]:
    now = now or utcnow()
    done = {"expired_points": ledger.expire_due(session, now=now)}
    if hourly:
        done["tiers_lowered"] = review(session, now=now)
        if with_birthdays:
            done["birthdays"] = birthdays(session, now=now)
        done["expiry_notices"] = expiring_notices(session, now=now)
    return done


def periodic(session: Session) -> None:
    """For the worker's schedule: expiry on every run, the rest once an hour (birthdays: hourly_birthdays)."""
    global _next_hourly
    hourly = time.monotonic() >= _next_hourly
    if hourly:
        _next_hourly = time.monotonic() + HOURLY_SECONDS
    run(session, hourly=hourly, with_birthdays=False)


def pending_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(LoyaltyLot).where(LoyaltyLot.remaining > 0)) or 0)
