"""The common redemption on PostgreSQL in one round trip: one call of the ``loyalty_redeem`` function.

:mod:`omnicanal.loyalty.redeem_function` holds the function (what :func:`omnicanal.loyalty.rewards.redeem` does
for a live customer with a wallet, a new ``request_id``, a product or external reward open to every tier and no
debt lots). The call runs in autocommit on the driver connection: the statement is its own transaction, so no
BEGIN or COMMIT travels; psycopg prepares it on the connection's first call, and PostgreSQL keeps the plans of
the statements inside the function for the life of the connection.

Whatever the function leaves to the general path (``outcome = 'general'``, nothing written) answers ``None``:
the caller then takes :func:`~omnicanal.loyalty.rewards.redeem`, which gives the same answers and errors.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from sqlalchemy.orm import Session

from omnicanal.db import Database, utcnow
from omnicanal.loyalty.ledger import InsufficientPoints
from omnicanal.loyalty.notifications import CHANNELS, PURPOSE
from omnicanal.loyalty.redeem_function import CLAIMED_MEANWHILE
from omnicanal.loyalty.rewards import OutOfStock, new_code
from omnicanal.realtime import runtime_for

_CALL = "SELECT * FROM loyalty_redeem(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_CHANNELS = list(CHANNELS)


def redeem(
    db: Database,
    *,
    customer_id: uuid.UUID,
    reward_id: uuid.UUID,
    request_id: str,
    channel: str,
    actor: str,
) -> dict[str, Any] | None:
    """The redemption answer (the fields of ``RedemptionOut``), or None: take the general path."""
    now = utcnow()
    code = new_code("LR-")
    params = (customer_id, reward_id, request_id, channel, actor, now, code, PURPOSE["reward_code"], _CHANNELS)
    pooled = db.write_engine.raw_connection()
    connection: Any = pooled.driver_connection
    connection.autocommit = True  # one statement, its own transaction
    try:
        try:
            row = connection.execute(_CALL, params, prepare=True).fetchone()
        except psycopg.Error as exc:
            if exc.sqlstate == CLAIMED_MEANWHILE:
                return None  # nothing was written; the general path answers (a conflict)
            raise
    finally:
        if not connection.closed:
            connection.autocommit = False
        pooled.close()
    outcome, redemption_id, cost, available, name, noticed = row
    if outcome == "general":
        return None
    if outcome == "insufficient":
        raise InsufficientPoints(f"{cost} points asked, {available} available", available=available, asked=cost)
    if outcome == "out_of_stock":
        raise OutOfStock(f"the reward {name!r} is out of stock")
    if noticed:
        _wake_outbox(db)
    return {
        "id": redemption_id,
        "customer_id": customer_id,
        "reward_id": reward_id,
        "request_id": request_id,
        "points": cost,
        "code": code,
        "status": "issued",
        "channel": channel,
        "created_at": now,
    }


def _wake_outbox(db: Database) -> None:
    with Session(db.write_engine) as session:  # binds the engine only, to find its runtime; no connection
        runtime = runtime_for(session)
    if runtime is not None:
        runtime.outbox_wakeup.set()
