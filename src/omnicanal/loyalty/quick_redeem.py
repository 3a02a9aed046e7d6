"""The common redemption on PostgreSQL in two round trips, on the driver connection.

What :func:`omnicanal.loyalty.rewards.redeem` does for the usual case (a live customer with a wallet, a new
``request_id``, a product or external reward open to everyone, no debt lots), with the same invariants:

1. BEGIN; lock the customer's wallet rows (in id order; the join checks the customer is live) and read the
   reward; read the consents for the code notice; claim the ``request_id``; read the spendable lots
   (soonest-expiring first); take one unit of stock if the reward counts it (``stock > 0``). The lots are
   read after the lock, by a later statement, so they are current.
2. one statement writes everything (data-modifying CTEs): the lots taken, their ledger entries, the
   redemption, the timeline event, the notice; then COMMIT.

Each step is one query string of several statements, bound on the client (``ClientCursor``, values
escaped by psycopg): one round trip each. The cost of a redemption is mostly round trips: each costs the
application and PostgreSQL about as much CPU as the work it carries (docs/benchmarks-loyalty.md, L2).

Anything else (no wallet yet, a repeated ``request_id``, an unknown, closed or tier-only reward, a voucher,
debts to settle) rolls back and answers ``None``: the caller then takes the general path, which gives the
same answers and errors.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from psycopg import ClientCursor
from psycopg.pq import TransactionStatus
from sqlalchemy.orm import Session

from omnicanal.db import Database, utcnow, uuid7
from omnicanal.loyalty.ledger import InsufficientPoints
from omnicanal.loyalty.notifications import CHANNELS, PURPOSE, preferred_channel
from omnicanal.loyalty.rewards import OutOfStock, is_open, new_code
from omnicanal.realtime import runtime_for

_LOCK = """
SELECT w.id, c.traits, r.id, r.name, r.kind, r.cost_points, r.stock, r.active, r.starts_at, r.ends_at, r.tiers
FROM loyalty_wallets AS w
JOIN customers AS c ON c.id = w.customer_id
LEFT OUTER JOIN loyalty_rewards AS r ON r.id = %(reward_id)s
WHERE w.customer_id = %(customer_id)s AND c.erased_at IS NULL AND c.merged_into_id IS NULL
ORDER BY w.id
FOR UPDATE OF w
"""
_CONSENTS = """
SELECT channel, status FROM consent_changes
WHERE customer_id = %(customer_id)s AND purpose = %(purpose)s AND channel = ANY(%(channels)s)
ORDER BY changed_at, id
"""
_CLAIM = "INSERT INTO loyalty_keys (key, created_at) VALUES (%(key)s, %(now)s) ON CONFLICT DO NOTHING RETURNING key"
_LOTS = """
SELECT id, customer_id, source_customer_id, remaining, available_from, expires_at
FROM loyalty_lots
WHERE customer_id = %(customer_id)s
  AND (remaining < 0 OR (remaining > 0 AND available_from <= %(now)s AND (expires_at IS NULL OR expires_at > %(now)s)))
ORDER BY CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, earned_at, id
"""
_TAKE_STOCK = "UPDATE loyalty_rewards SET stock = stock - 1 WHERE id = %(reward_id)s AND stock > 0 RETURNING stock"
_READ = ";\n".join(["BEGIN", _LOCK, _CONSENTS, _CLAIM, _LOTS, _TAKE_STOCK])
_WRITE = """
WITH taken AS (
  UPDATE loyalty_lots AS l SET remaining = v.remaining
  FROM unnest(%(lot_ids)s::uuid[], %(remaining)s::int[]) AS v(id, remaining)
  WHERE l.id = v.id
), entries AS (
  INSERT INTO loyalty_entries (id, customer_id, source_customer_id, lot_id, points, reason, source, note, actor,
                               available_from, expires_at, redemption_id, created_at)
  SELECT e.id, e.customer_id, e.source_customer_id, e.lot_id, e.points, 'redeem', %(source)s, '', %(actor)s,
         e.available_from, e.expires_at, %(redemption_id)s, %(now)s
  FROM unnest(%(entry_ids)s::uuid[], %(entry_customers)s::uuid[], %(entry_sources)s::uuid[], %(lot_ids)s::uuid[],
              %(entry_points)s::int[], %(entry_from)s::timestamptz[], %(entry_expires)s::timestamptz[])
       AS e(id, customer_id, source_customer_id, lot_id, points, available_from, expires_at)
), redemption AS (
  INSERT INTO loyalty_redemptions (id, customer_id, source_customer_id, reward_id, request_id, points, code, status,
                                   channel, actor, created_at)
  VALUES (%(redemption_id)s, %(customer_id)s, %(customer_id)s, %(reward_id)s, %(request_id)s, %(points)s, %(code)s,
          'issued', %(channel)s, %(actor)s, %(now)s)
), event AS (
  INSERT INTO events (event_id, customer_id, source_customer_id, type, channel, occurred_at, received_at, properties)
  VALUES (%(event_id)s, %(customer_id)s, %(customer_id)s, 'loyalty.reward_redeemed', 'system', %(now)s, %(now)s,
          %(event_properties)s::jsonb)
)"""
_NOTICE = """, notice AS (
  INSERT INTO outbox (id, kind, channel, state, attempts, max_attempts, next_attempt_at, created_at, customer_id,
                      payload)
  VALUES (%(notice_id)s, 'loyalty', %(notice_channel)s, 'pending', 0, 8, %(now)s, %(now)s, %(customer_id)s,
          %(notice_payload)s::jsonb)
)"""
_WRITES = {notice: _WRITE + (_NOTICE if notice else "") + "\nSELECT 1;\nCOMMIT" for notice in (False, True)}


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
    params = {
        "customer_id": customer_id,
        "reward_id": reward_id,
        "purpose": PURPOSE["reward_code"],
        "channels": list(CHANNELS),
        "key": f"redeem:{request_id}",
        "now": now,
    }
    pooled = db.write_engine.raw_connection()
    connection: Any = pooled.driver_connection
    connection.autocommit = True  # the transaction is ours: BEGIN and COMMIT travel with the statements
    try:
        cursor = ClientCursor(connection)
        try:
            cursor.execute(_READ, params)
            cursor.nextset()
            wallets = cursor.fetchall()
            cursor.nextset()
            latest = dict(cursor.fetchall())
            cursor.nextset()
            is_new = cursor.fetchone() is not None
            cursor.nextset()
            rows = cursor.fetchall()
            cursor.nextset()
            stocked = cursor.fetchone() is not None
            answer = None
            if wallets and is_new:
                answer = _decide(cursor, wallets[0], rows, stocked, latest, params, request_id, channel, actor)
            if answer is None:
                cursor.execute("ROLLBACK")
        except BaseException:
            if not connection.closed and connection.info.transaction_status != TransactionStatus.IDLE:
                connection.execute("ROLLBACK")
            raise
    finally:
        if not connection.closed:
            connection.autocommit = False
        pooled.close()
    if answer is None:
        return None
    if answer.pop("_notice"):
        _wake_outbox(db)
    return answer


def _decide(
    cursor: Any,
    found: Any,
    rows: list[Any],
    stocked: bool,
    latest: dict[str, str],
    params: dict[str, Any],
    request_id: str,
    channel: str,
    actor: str,
) -> dict[str, Any] | None:
    _, traits, rid, name, kind, cost, stock, active, starts_at, ends_at, tiers = found
    now = params["now"]
    if rid is None or kind == "voucher" or tiers or not is_open(active, starts_at, ends_at, now):
        return None
    if any(row[3] < 0 for row in rows):
        return None  # debts are settled first, by the general path
    available = sum(row[3] for row in rows)
    if available < cost:
        cursor.execute("ROLLBACK")
        raise InsufficientPoints(f"{cost} points asked, {available} available", available=available, asked=cost)
    if stock is not None and not stocked:
        cursor.execute("ROLLBACK")
        raise OutOfStock(f"the reward {name!r} is out of stock")
    return _write(cursor, rows, params, name=name, cost=cost, request_id=request_id, channel=channel, actor=actor,
                  notice_channel=_notice_channel(traits, latest))  # fmt: skip


def _write(
    cursor: Any,
    rows: list[Any],
    params: dict[str, Any],
    *,
    name: str,
    cost: int,
    request_id: str,
    channel: str,
    actor: str,
    notice_channel: str | None,
) -> dict[str, Any]:
    customer_id, reward_id, now = params["customer_id"], params["reward_id"], params["now"]
    redemption_id = uuid7()
    left = cost
    taken: list[Any] = []
    for row in rows:
        if left == 0:
            break
        take = min(row[3], left)
        left -= take
        taken.append((row, take))
    code = new_code("LR-")
    details = {"reward": name, "points": cost, "code": code, "channel": channel}
    values: dict[str, Any] = {
        "lot_ids": [row[0] for row, _ in taken],
        "remaining": [row[3] - take for row, take in taken],
        "entry_ids": [uuid7() for _ in taken],
        "entry_customers": [row[1] for row, _ in taken],
        "entry_sources": [row[2] for row, _ in taken],
        "entry_points": [-take for _, take in taken],
        "entry_from": [row[4] for row, _ in taken],
        "entry_expires": [row[5] for row, _ in taken],
        "source": f"redemption:{request_id}",
        "actor": actor,
        "redemption_id": redemption_id,
        "customer_id": customer_id,
        "reward_id": reward_id,
        "request_id": request_id,
        "points": cost,
        "code": code,
        "channel": channel,
        "now": now,
        "event_id": f"oc_{uuid7().hex}",
        "event_properties": orjson.dumps({k: v for k, v in details.items() if k != "code"}).decode(),
    }
    if notice_channel is not None:
        payload = {"customer_id": str(customer_id), "template": "reward_code", "data": details}
        values["notice_id"] = uuid7()
        values["notice_channel"] = notice_channel
        values["notice_payload"] = orjson.dumps(payload).decode()
    cursor.execute(_WRITES[notice_channel is not None], values)
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
        "_notice": notice_channel is not None,
    }


def _notice_channel(traits: Any, latest: dict[str, str]) -> str | None:
    """What ``notifications.channel_for`` answers, from the consents and traits already read."""
    if not latest:
        return None
    return preferred_channel(traits, latest)


def _wake_outbox(db: Database) -> None:
    with Session(db.write_engine) as session:  # binds the engine only, to find its runtime; no connection
        runtime = runtime_for(session)
    if runtime is not None:
        runtime.outbox_wakeup.set()
