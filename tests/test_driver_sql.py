"""Driver-level helpers: the writer's light savepoint, and the objects of one model a session holds."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from omnicanal.commerce.models import CatalogVersion, Reservation
from omnicanal.db import Database
from omnicanal.driver_sql import held_objects, sqlite_savepoint


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
