"""Wallets: one row per customer ever written to (a survivor of merges owns several). Spending locks them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import bulk_insert, connection_of, fetch_typed
from omnicanal.loyalty.models import LoyaltyWallet
from omnicanal.loyalty.queries import among_param, among_value, is_postgres, prebuilt


def ensure_wallets(session: Session, customer_ids: Iterable[uuid.UUID], *, now: datetime | None = None) -> None:
    wanted = list(dict.fromkeys(customer_ids))
    checked = len(wanted) > 1
    if checked:  # a statement built once, run on the connection: the ORM's select cost a batch more than its rows
        dialect = session.get_bind().dialect.name
        session.flush()
        statement = prebuilt(dialect, "wallets.known", _build_known)
        known = {row[0] for row in fetch_typed(session, statement, {"ids": among_value(dialect, wanted)})}
        wanted = [c for c in wanted if c not in known]
    rows = [
        {
            "id": uuid7(),
            "customer_id": c,
            "source_customer_id": c,
            "created_at": now or utcnow(),
            "referral_rewarded": False,
        }
        for c in wanted
    ]
    if rows and checked and not is_postgres(session):
        bulk_insert(session, LoyaltyWallet, rows)  # SQLite writers are serialized: nothing can come in between
    elif rows:
        statement = prebuilt(session.get_bind().dialect.name, "wallets.ensure", _build_ensure)
        session.flush()
        connection_of(session).execute(statement, rows)


def _build_known(dialect: str) -> Any:
    column = LoyaltyWallet.__table__.c.source_customer_id
    return select(column).where(among_param(dialect, column, "ids"))


def _build_ensure(dialect: str) -> Any:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(LoyaltyWallet.__table__).on_conflict_do_nothing(index_elements=["source_customer_id"])


def lock_wallets(session: Session, customer_id: uuid.UUID) -> list[LoyaltyWallet]:
    """The customer's wallet rows, locked in id order (one per customer merged into this one)."""
    stmt = select(LoyaltyWallet).where(LoyaltyWallet.customer_id == customer_id).order_by(LoyaltyWallet.id)
    if is_postgres(session):
        stmt = stmt.with_for_update()
    wallets = list(session.scalars(stmt))
    if not wallets:
        ensure_wallets(session, [customer_id])
        wallets = list(session.scalars(stmt))
    return wallets


def primary_wallet(session: Session, customer_id: uuid.UUID) -> LoyaltyWallet:
    ensure_wallets(session, [customer_id])
    wallet = session.scalar(select(LoyaltyWallet).where(LoyaltyWallet.source_customer_id == customer_id))
    assert wallet is not None
    return wallet
