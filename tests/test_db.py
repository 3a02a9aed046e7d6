"""The PostgreSQL pool: a connection idle for a while is pinged on checkout, and a dead one replaced."""

import pytest
from sqlalchemy import text

from omnicanal import db as db_module
from omnicanal.db import Database

PID = text("SELECT pg_backend_pid()")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_connection_that_died_while_idle_is_replaced(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = db.write_engine.connect(), db.write_engine.connect()
    dead = first.execute(PID).scalar_one()
    first.close()  # back to the pool, idle
    second.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead})
    second.close()
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # both count as idle for a while
    both = [db.write_engine.connect(), db.write_engine.connect()]
    try:
        assert dead not in {connection.execute(PID).scalar_one() for connection in both}
    finally:
        for connection in both:
            connection.close()
