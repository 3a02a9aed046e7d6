"""Driver-level helpers: the writer's light savepoint, the objects of one model a session holds, and objects loaded
by id on the driver."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select

from omnicanal.commerce.models import CatalogVersion, Order, Reservation
from omnicanal.commerce.rows import load_by_ids
from omnicanal.db import Database
from omnicanal.driver_sql import held_objects, sqlite_savepoint
from tests.commerce.helpers import API, cart, ok, shop


class Refused(Exception):
    pass


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_failed_block_takes_back_only_its_own_writes(client: TestClient, db: Database) -> None:
    with db.write() as session:
        session.add(CatalogVersion(name="before", version=1))
        with sqlite_savepoint(session):
            session.add(CatalogVersion(name="kept", version=1))
        kept = session.get(CatalogVersion, "kept")
        assert kept is not None
        with pytest.raises(Refused), sqlite_savepoint(session):
            kept.version = 7  # a change in memory, flushed inside the block
            session.add(CatalogVersion(name="refused", version=1))
            session.flush()
            raise Refused
        # the session forgot what the block had changed: it reads the rows as they are again
        assert session.get(CatalogVersion, "kept").version == 1  # type: ignore[union-attr]
        session.add(CatalogVersion(name="after", version=1))
    with db.read() as session:
        names = set(session.scalars(select(CatalogVersion.name)))
    assert {"before", "kept", "after"} <= names
    assert "refused" not in names


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_held_objects_are_the_sessions_objects_of_one_model(client: TestClient, db: Database) -> None:
    with db.write() as session:
        versions = [CatalogVersion(name="a", version=1), CatalogVersion(name="b", version=1)]
        session.add_all(versions)
        session.flush()  # from here the session holds them only weakly: ``versions`` keeps them alive
        assert sorted(v.name for v in held_objects(session, CatalogVersion)) == ["a", "b"]
        assert held_objects(session, Reservation) == []


def test_objects_loaded_by_id_are_what_the_orms_select_loads(client: TestClient, db: Database) -> None:
    data = shop(client)
    customer = data["customer"]["id"]
    delivered = ok(client.post(f"{API}/orders", json=cart(customer, [("TEE-M", 2), ("BOOK-1", 1)])), 201)
    pickup = {"type": "pickup", "store_id": data["centro"]["id"]}
    collected = ok(client.post(f"{API}/orders", json=cart(customer, [("RUN-42", 1)], fulfillment=pickup)), 201)
    ids = [uuid.UUID(delivered["id"]), uuid.UUID(collected["id"]), uuid.uuid4()]  # the last: no such order
    columns = [attribute.key for attribute in inspect(Order).column_attrs]
    with db.read() as session:
        expected = {o.id: {c: getattr(o, c) for c in columns} for o in session.scalars(select(Order))}
    with db.write() as session:
        loaded = load_by_ids(session, Order, ids)
        assert {o.id: {c: getattr(o, c) for c in columns} for o in loaded} == expected
        assert all(inspect(o).persistent and not session.is_modified(o) for o in loaded)
        # loaded as the ORM would: a change is flushed as usual, and an object held is kept as it is
        loaded[0].status = "cancelled"
        assert load_by_ids(session, Order, ids[:1]) == [loaded[0]]
        assert loaded[0].status == "cancelled"
    with db.read() as session:
        assert session.get(Order, loaded[0].id).status == "cancelled"  # type: ignore[union-attr]
