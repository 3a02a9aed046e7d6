"""Idempotency keys: every earning, reversal and redemption claims its key first, so a source counts once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from omnicanal.db import utcnow
from omnicanal.driver_sql import bulk_insert, connection_of, fetch_typed
from omnicanal.loyalty.models import LoyaltyKey
from omnicanal.loyalty.queries import among_param, among_value, insert, is_postgres, prebuilt

_CLAIM = {
    dialect: module.insert(LoyaltyKey)
    .values(key=bindparam("key"), created_at=bindparam("created_at"))
    .on_conflict_do_nothing()
    .returning(LoyaltyKey.key)
    for dialect, module in (("postgresql", postgresql), ("sqlite", sqlite))
}


def claim(session: Session, key: str, *, now: datetime | None = None) -> bool:
    """Claim ``key`` for this transaction; False when an earlier (or concurrent, committed) one holds it."""
    connection = connection_of(session)
    stmt = _CLAIM[connection.dialect.name]
    return connection.execute(stmt, {"key": key, "created_at": now or utcnow()}).scalar() is not None


def claim_many(session: Session, keys: Sequence[str], *, now: datetime) -> set[str]:
    """The keys of ``keys`` claimed now (those already claimed before are left out)."""
    if not keys:
        return set()
    dialect = session.get_bind().dialect.name
    statement = prebuilt(dialect, "keys.known", _build_known)
    session.flush()
    known = {row[0] for row in fetch_typed(session, statement, {"keys": among_value(dialect, keys)})}
    fresh = [k for k in dict.fromkeys(keys) if k not in known]
    if not fresh:
        return set()
    if is_postgres(session):
        stmt = insert(session, LoyaltyKey).values([{"key": k, "created_at": now} for k in fresh])
        stmt = stmt.on_conflict_do_nothing().returning(LoyaltyKey.key)
        return set(session.scalars(stmt))
    # SQLite writers are serialized, so what was not known a moment ago is free now.
    bulk_insert(session, LoyaltyKey, [{"key": k, "created_at": now} for k in fresh])
    return set(fresh)


def _build_known(dialect: str) -> Any:
    column = LoyaltyKey.__table__.c.key
    return select(column).where(among_param(dialect, column, "keys"))
