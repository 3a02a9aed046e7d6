"""Locations (stores and warehouses), stock per location, and reservations.

Stock changes only by conditional updates: a reservation succeeds only while
``on_hand - reserved >= quantity`` holds in the same statement, so concurrent orders can never
reserve more than there is, whatever the database. Several rows are always changed in
(location, SKU) order, so two orders cannot deadlock on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import available_timezones

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from omnicanal.commerce.models import Location, Reservation, Stock, Variant
from omnicanal.commerce.rows import table_of
from omnicanal.commerce.schemas import StockOut, StoreIn, StoreOut
from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import bulk_insert, driver_rows, held_objects, run_statement, uuid_from_db
from omnicanal.errors import Conflict, NotFound, ValidationFailed

_TIMEZONES = available_timezones()


def create_store(session: Session, data: StoreIn) -> Location:
    if data.timezone not in _TIMEZONES:
        raise ValidationFailed.on_field("timezone", f"unknown IANA time zone {data.timezone!r}")
    if session.scalar(select(Location.id).where(Location.code == data.code)) is not None:
        raise Conflict(f"a location with the code {data.code!r} exists already")
    from omnicanal.commerce.catalog import bump_version

    bump_version(session, "catalog")
    location = Location(
        code=data.code,
        name=data.name,
        kind=data.kind,
        address=data.address,
        opening_hours=data.opening_hours,
        timezone=data.timezone,
        pickup=data.kind == "store" if data.pickup is None else data.pickup,
        ships=data.ships,
    )
    session.add(location)
    session.flush()
    return location


def store_out(location: Location, *, available: int | None = None) -> StoreOut:
    return StoreOut(
        id=location.id,
        code=location.code,
        name=location.name,
        kind=location.kind,
        address=location.address or {},
        opening_hours=location.opening_hours or {},
        timezone=location.timezone,
        pickup=location.pickup,
        ships=location.ships,
        available=available,
    )


def get_store(session: Session, store_id: uuid.UUID, *, field: str | None = None) -> Location:
    location = session.get(Location, store_id)
    if location is None or not location.active:
        if field:
            raise ValidationFailed.on_field(field, f"unknown store {store_id}")
        raise NotFound(f"store {store_id} not found")
    return location


def list_stores(session: Session, *, sku: str | None = None, kind: str | None = None) -> list[StoreOut]:
    """Every location; with ``sku``, how many units each has available ("available at store X")."""
    stmt = select(Location).where(Location.active.is_(True))
    if kind:
        stmt = stmt.where(Location.kind == kind)
    locations = list(session.scalars(stmt.order_by(Location.code)))
    if sku is None:
        return [store_out(location) for location in locations]
    levels = {
        location_id: on_hand - reserved
        for location_id, on_hand, reserved in session.execute(
            select(Stock.location_id, Stock.on_hand, Stock.reserved).where(Stock.sku == sku)
        )
    }
    return [store_out(location, available=max(levels.get(location.id, 0), 0)) for location in locations]


def _known_sku(session: Session, sku: str) -> None:
    if session.get(Variant, sku) is None:
        raise NotFound(f"unknown SKU {sku!r}")


def stock_level(session: Session, *, store_id: uuid.UUID, sku: str) -> StockOut:
    get_store(session, store_id)
    _known_sku(session, sku)
    row = session.get(Stock, (store_id, sku))
    on_hand, reserved = (row.on_hand, row.reserved) if row else (0, 0)
    return StockOut(sku=sku, on_hand=on_hand, reserved=reserved, available=max(on_hand - reserved, 0))


def set_stock(session: Session, *, store_id: uuid.UUID, sku: str, quantity: int) -> StockOut:
    """The counted units on hand. Refused below what is reserved for orders (hand those over or cancel first)."""
    get_store(session, store_id)
    _known_sku(session, sku)
    if session.get(Stock, (store_id, sku)) is None:
        session.add(Stock(location_id=store_id, sku=sku, on_hand=0, reserved=0, updated_at=utcnow()))
        session.flush()
    result = session.execute(
        update(Stock)
        .where(Stock.location_id == store_id, Stock.sku == sku, Stock.reserved <= quantity)
        .values(on_hand=quantity, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        reserved = session.scalar(select(Stock.reserved).where(Stock.location_id == store_id, Stock.sku == sku))
        raise Conflict(
            f"{reserved} units of {sku} are reserved for orders here; on hand cannot go below that",
            sku=sku,
            reserved=reserved,
        )
    session.expire_all()
    return stock_level(session, store_id=store_id, sku=sku)


def availability(session: Session, skus: Sequence[str]) -> dict[str, dict[uuid.UUID, int]]:
    """Units available per SKU and location."""
    result: dict[str, dict[uuid.UUID, int]] = {}
    if not skus:
        return result
    session.flush()
    wanted = sorted(set(skus))
    marks = ", ".join("?" * len(wanted))
    sql = f"SELECT sku, location_id, on_hand, reserved FROM commerce_stock WHERE sku IN ({marks})"
    for sku, location_id, on_hand, reserved in driver_rows(session, sql, wanted):
        result.setdefault(sku, {})[uuid_from_db(location_id)] = on_hand - reserved
    return result


@dataclass(frozen=True)
class Hold:
    location_id: uuid.UUID
    sku: str
    quantity: int
    line: int  # index of the order line, for errors


def reserve(session: Session, holds: Sequence[Hold], *, order_id: uuid.UUID, expires_at: datetime | None) -> None:
    """Reserve every hold or none: a hold that finds too little stock raises (the caller rolls back)."""
    merged: dict[tuple[uuid.UUID, str], Hold] = {}
    for hold in holds:
        key = (hold.location_id, hold.sku)
        previous = merged.get(key)
        quantity = hold.quantity + (previous.quantity if previous else 0)
        merged[key] = Hold(hold.location_id, hold.sku, quantity, previous.line if previous else hold.line)
    now = utcnow()
    reservations = []
    for (location_id, sku), hold in sorted(merged.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        taken = run_statement(
            session, _RESERVE, {"b_location": location_id, "b_sku": sku, "quantity": hold.quantity, "now": now}
        )
        if taken != 1:
            raise Conflict(
                f"lines[{hold.line}]: not enough stock of {sku} left (another order took it); quote again",
                line=hold.line,
                sku=sku,
            )
        reservations.append(
            {
                "id": uuid7(),
                "order_id": order_id,
                "location_id": location_id,
                "sku": sku,
                "quantity": hold.quantity,
                "state": "held",
                "expires_at": expires_at,
                "created_at": now,
            }
        )
    bulk_insert(session, Reservation, reservations)  # rows: nothing in the placing transaction changes them


_stock = table_of(Stock).c
# the condition and the change in one statement: concurrent orders cannot both take the last units
_RESERVE = (
    update(table_of(Stock))
    .where(
        _stock.location_id == bindparam("b_location"),
        _stock.sku == bindparam("b_sku"),
        _stock.on_hand - _stock.reserved >= bindparam("quantity"),
    )
    .values(reserved=_stock.reserved + bindparam("quantity"), updated_at=bindparam("now"))
)


# An order's reservations are found by the order_id index. Without statistics SQLite prefers the (state,
# expires_at) index of the expiry sweep for ``state = 'held'`` and walks every held reservation of every order
# (a payment's cost grew with the number of orders); ``state || ''`` keeps that index out of these lookups.
_HELD = (Reservation.state + "") == "held"


def _held(session: Session, order_id: uuid.UUID) -> list[Reservation]:
    return list(
        session.scalars(
            select(Reservation)
            .where(Reservation.order_id == order_id, _HELD)
            .order_by(Reservation.location_id, Reservation.sku)
        )
    )


def release(session: Session, order_id: uuid.UUID) -> int:
    """Give back every unit still held for an order; returns how many."""
    released = 0
    now = utcnow()
    for reservation in _held(session, order_id):
        session.execute(
            update(Stock)
            .where(Stock.location_id == reservation.location_id, Stock.sku == reservation.sku)
            .values(reserved=Stock.reserved - reservation.quantity, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        reservation.state = "released"
        released += reservation.quantity
    return released


def consume(session: Session, order_id: uuid.UUID, wanted: dict[str, int]) -> dict[str, uuid.UUID]:
    """Units leave the building (shipped or handed over): on hand and reserved both drop.

    Returns the location each SKU left from. A reservation partly consumed is split.
    """
    now = utcnow()
    origin: dict[str, uuid.UUID] = {}
    remaining = dict(wanted)
    for reservation in _held(session, order_id):
        take = min(remaining.get(reservation.sku, 0), reservation.quantity)
        if take <= 0:
            continue
        session.execute(
            update(Stock)
            .where(Stock.location_id == reservation.location_id, Stock.sku == reservation.sku)
            .values(on_hand=Stock.on_hand - take, reserved=Stock.reserved - take, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        remaining[reservation.sku] -= take
        origin[reservation.sku] = reservation.location_id
        if take == reservation.quantity:
            reservation.state = "consumed"
        else:
            reservation.quantity -= take
            session.add(
                Reservation(
                    order_id=order_id,
                    location_id=reservation.location_id,
                    sku=reservation.sku,
                    quantity=take,
                    state="consumed",
                    expires_at=reservation.expires_at,
                    created_at=now,
                )
            )
    return origin


def set_expiry(session: Session, order_id: uuid.UUID, expires_at: datetime | None) -> None:
    session.flush()  # reservations added in this transaction are rows before they are updated
    run_statement(session, _SET_EXPIRY, {"b_order_id": order_id, "b_expires_at": expires_at})
    for loaded in held_objects(session, Reservation):  # what the ORM's UPDATE synchronized
        if loaded.order_id == order_id and loaded.state == "held":
            set_committed_value(loaded, "expires_at", expires_at)


_reservation = table_of(Reservation).c
_SET_EXPIRY = (
    update(table_of(Reservation))
    .where(_reservation.order_id == bindparam("b_order_id"), _HELD)
    .values(expires_at=bindparam("b_expires_at"))
)


def restock(session: Session, *, location_id: uuid.UUID, sku: str, quantity: int) -> None:
    """Returned goods back on the shelf where they were received."""
    now = utcnow()
    if session.get(Stock, (location_id, sku)) is None:
        session.add(Stock(location_id=location_id, sku=sku, on_hand=0, reserved=0, updated_at=now))
        session.flush()
    session.execute(
        update(Stock)
        .where(Stock.location_id == location_id, Stock.sku == sku)
        .values(on_hand=Stock.on_hand + quantity, updated_at=now)
        .execution_options(synchronize_session=False)
    )
