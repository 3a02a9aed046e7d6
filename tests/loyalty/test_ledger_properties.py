"""Property tests: under any sequence of earning, spending, expiry and returns the ledger stays exact.

A plain-Python model of the lots runs beside the real ledger; after every step the real lots must hold what
the model says (which also proves spending takes the soonest-expiring lots first), every lot must equal the
sum of its entries, and the balance must equal the sum of the customer's ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select

from omnicanal.customers.schemas import CustomerCreate
from omnicanal.customers.service import create_customer
from omnicanal.db import Database, create_database, utcnow
from omnicanal.loyalty import balances, ledger
from omnicanal.loyalty.models import LoyaltyEntry, LoyaltyLot
from omnicanal.models import metadata
from omnicanal.settings import Settings


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path: Path = tmp_path_factory.mktemp("ledger") / "ledger.db"
    db = create_database(Settings(database_url=f"sqlite:///{path}", environment="test"))
    metadata.create_all(db.write_engine)
    try:
        yield db
    finally:
        db.dispose()


@dataclass
class ModelLot:
    id: uuid.UUID
    remaining: int
    expires_at: datetime | None
    available_from: datetime
    earned_at: datetime


earn = st.tuples(st.just("earn"), st.integers(1, 500), st.one_of(st.none(), st.integers(1, 60)), st.booleans())
spend = st.tuples(st.just("spend"), st.integers(1, 800), st.none(), st.booleans())
wait = st.tuples(st.just("wait"), st.integers(1, 40), st.none(), st.booleans())
take_back = st.tuples(st.just("return"), st.integers(1, 300), st.none(), st.booleans())
steps = st.lists(st.one_of(earn, spend, wait, take_back), min_size=1, max_size=25)


def _sort_key(lot: ModelLot) -> tuple[int, datetime, datetime, uuid.UUID]:
    return (lot.expires_at is None, lot.expires_at or lot.earned_at, lot.earned_at, lot.id)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_ledger_stays_exact(database: Database, steps: list[tuple[str, int, int | None, bool]]) -> None:
    with database.write() as session:
        customer_id = create_customer(session, data=CustomerCreate(), settings=database.settings, source="api").id
    now = utcnow().replace(microsecond=0)
    model: list[ModelLot] = []
    debt = 0
    for n, (kind, amount, days, pending) in enumerate(steps):
        with database.write() as session:
            if kind == "earn":
                available_from = now + timedelta(days=10) if pending else now
                expires_at = now + timedelta(days=days) if days is not None else None
                lot = ledger.NewLot(
                    customer_id=customer_id,
                    points=amount,
                    reason="bonus",
                    source=f"s{n}",
                    available_from=available_from,
                    expires_at=expires_at,
                )
                (lot_id,) = ledger.add_lots(session, [lot], now=now)
                model.append(ModelLot(lot_id, amount, expires_at, available_from, now))
            elif kind == "spend":
                usable = [
                    m
                    for m in model
                    if m.remaining > 0 and m.available_from <= now and (m.expires_at is None or m.expires_at > now)
                ]
                # debts are paid first from the soonest-expiring points
                for m in sorted(usable, key=_sort_key):
                    paid = min(m.remaining, debt)
                    m.remaining -= paid
                    debt -= paid
                available = sum(m.remaining for m in usable) - debt
                try:
                    ledger.spend(
                        session, customer_id=customer_id, points=amount, reason="redeem", source=f"r{n}", now=now
                    )
                except ledger.InsufficientPoints:
                    assert available < amount
                else:
                    assert available >= amount
                    left = amount
                    for m in sorted(usable, key=_sort_key):
                        taken = min(m.remaining, left)
                        m.remaining -= taken
                        left -= taken
            elif kind == "wait":
                now += timedelta(days=amount)
                # other examples' customers share the database, so the lots below are what proves exactness
                ledger.expire_due(session, now=now)
                for m in [m for m in model if m.expires_at is not None and m.expires_at <= now and m.remaining > 0]:
                    m.remaining = 0
            elif model:
                target = model[amount % len(model)]
                real = session.get(LoyaltyLot, target.id)
                assert real is not None
                owed = min(amount, 50)
                debt += ledger.take_back(session, real, owed, reason="return", source=f"ret{n}", now=now)
                target.remaining = max(target.remaining - owed, 0) if target.remaining >= 0 else target.remaining
        with database.read() as session:
            lots = {
                lot.id: lot for lot in session.scalars(select(LoyaltyLot).where(LoyaltyLot.customer_id == customer_id))
            }
            per_lot = dict(
                session.execute(
                    select(LoyaltyEntry.lot_id, func.sum(LoyaltyEntry.points))
                    .where(LoyaltyEntry.customer_id == customer_id)
                    .group_by(LoyaltyEntry.lot_id)
                ).all()
            )
            for lot in lots.values():
                assert lot.remaining == per_lot[lot.id]
            for m in model:
                assert lots[m.id].remaining == m.remaining
            debt_lots = sum(lot.remaining for lot in lots.values() if lot.remaining < 0)
            assert -debt_lots == debt
            found = balances.summary(session, customer_id, now=now)
            assert found.balance + found.pending == sum(lot.remaining for lot in lots.values())
