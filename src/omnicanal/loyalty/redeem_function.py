"""The common redemption as one PostgreSQL function: one statement, planned once per connection.

``loyalty_redeem`` does what :func:`omnicanal.loyalty.rewards.redeem` does for the usual case (a live customer
with a wallet, a new ``request_id``, a product or external reward open to every tier, no debt lots), with the
same invariants: the customer's wallet rows locked (in id order) before the lots are read, the soonest-expiring
lots taken first, one unit of stock taken by a conditional update, the ``request_id`` claimed, then the lots'
entries, the redemption, the timeline event and the code notice written in the same transaction.

It answers one row ``(outcome, redemption_id, cost, available, reward_name, noticed)``; ``outcome`` is
``issued``, ``insufficient`` (nothing written), ``out_of_stock`` (nothing written) or ``general``: anything
else (no wallet yet, a ``request_id`` seen before, an unknown, closed, tier-only or voucher reward, debts to
settle), nothing written, for the general path to answer. Every refusal is decided before the first write, so
none of them needs an exception; the one exception, :data:`CLAIMED_MEANWHILE`, undoes the stock taken when a
request for another customer claimed the same ``request_id`` between the check and the claim.

Statements inside a PL/pgSQL function keep their plans for the life of the connection: parsing and planning
the redemption's statements was about half of PostgreSQL's CPU per redemption (docs/benchmarks-loyalty.md, L2).
The same text is created by the migration ``0010_loyalty_redeem_function`` and, for schemas built with
``metadata.create_all`` (the tests), by :func:`install` on the metadata; ``tests/test_migrations.py`` checks
that both define the same functions.
"""

from __future__ import annotations

from sqlalchemy import DDL, MetaData, event

CLAIMED_MEANWHILE = "OC001"  # the SQLSTATE raised when the request_id was claimed since the check

# RFC 9562 version 7, as omnicanal.db.uuid7 makes them: 48 bits of Unix milliseconds, then random bits.
UUID7_FUNCTION = """
CREATE OR REPLACE FUNCTION loyalty_uuid7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1),
    'hex')::uuid
$$
"""

REDEEM_FUNCTION = """
CREATE OR REPLACE FUNCTION loyalty_redeem(
  p_customer uuid, p_reward uuid, p_request_id text, p_channel text, p_actor text, p_at timestamptz,
  p_code text, p_purpose text, p_channels text[],
  OUT outcome text, OUT redeemed_id uuid, OUT cost integer, OUT available integer, OUT reward_name text,
  OUT noticed boolean
)
LANGUAGE plpgsql AS $$
DECLARE
  v_traits jsonb;
  v_found uuid;
  v_kind text;
  v_stock integer;
  v_active boolean;
  v_starts timestamptz;
  v_ends timestamptz;
  v_tiers jsonb;
  v_debts boolean;
  v_lot record;
  v_left integer;
  v_take integer;
  v_notice_channel text;
BEGIN
  outcome := 'general';
  noticed := false;
  -- the wallet lock first; the join checks that the customer is live (not merged, not erased)
  PERFORM 1 FROM loyalty_wallets AS w JOIN customers AS c ON c.id = w.customer_id
  WHERE w.customer_id = p_customer AND c.erased_at IS NULL AND c.merged_into_id IS NULL
  ORDER BY w.id FOR UPDATE OF w;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  -- a request_id seen before answers what it answered then (general path); the lock makes this exact for
  -- the customer's own requests
  PERFORM 1 FROM loyalty_keys AS k WHERE k.key = 'redeem:' || p_request_id;
  IF FOUND THEN
    RETURN;
  END IF;
  SELECT c.traits, r.id, r.name, r.kind, r.cost_points, r.stock, r.active, r.starts_at, r.ends_at, r.tiers
  INTO v_traits, v_found, reward_name, v_kind, cost, v_stock, v_active, v_starts, v_ends, v_tiers
  FROM customers AS c LEFT OUTER JOIN loyalty_rewards AS r ON r.id = p_reward
  WHERE c.id = p_customer;
  IF v_found IS NULL OR v_kind = 'voucher' OR cost <= 0
     OR NOT (v_tiers IS NULL OR v_tiers = '[]'::jsonb OR v_tiers = 'null'::jsonb)
     OR (v_active AND (v_starts IS NULL OR p_at >= v_starts) AND (v_ends IS NULL OR p_at < v_ends)) IS NOT TRUE
  THEN
    RETURN;
  END IF;
  SELECT coalesce(sum(l.remaining), 0), coalesce(bool_or(l.remaining < 0), false) INTO available, v_debts
  FROM loyalty_lots AS l
  WHERE l.customer_id = p_customer
    AND (l.remaining < 0 OR (l.remaining > 0 AND l.available_from <= p_at
                             AND (l.expires_at IS NULL OR l.expires_at > p_at)));
  IF v_debts THEN
    RETURN;  -- the general path settles debts first
  END IF;
  IF available < cost THEN
    outcome := 'insufficient';
    RETURN;
  END IF;
  IF v_stock IS NOT NULL THEN
    UPDATE loyalty_rewards SET stock = stock - 1 WHERE id = p_reward AND stock > 0;
    IF NOT FOUND THEN
      outcome := 'out_of_stock';
      RETURN;
    END IF;
  END IF;
  INSERT INTO loyalty_keys (key, created_at) VALUES ('redeem:' || p_request_id, p_at) ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    RAISE USING ERRCODE = 'OC001', MESSAGE = 'request_id ' || p_request_id || ' was claimed meanwhile';
  END IF;
  redeemed_id := loyalty_uuid7();
  v_left := cost;
  FOR v_lot IN
    SELECT l.id, l.customer_id, l.source_customer_id, l.remaining, l.available_from, l.expires_at
    FROM loyalty_lots AS l
    WHERE l.customer_id = p_customer AND l.remaining > 0 AND l.available_from <= p_at
      AND (l.expires_at IS NULL OR l.expires_at > p_at)
    ORDER BY l.expires_at IS NULL, l.expires_at, l.earned_at, l.id
  LOOP
    EXIT WHEN v_left = 0;
    v_take := least(v_lot.remaining, v_left);
    v_left := v_left - v_take;
    UPDATE loyalty_lots SET remaining = remaining - v_take WHERE id = v_lot.id;
    INSERT INTO loyalty_entries (id, customer_id, source_customer_id, lot_id, points, reason, source, note, actor,
                                 available_from, expires_at, redemption_id, created_at)
    VALUES (loyalty_uuid7(), v_lot.customer_id, v_lot.source_customer_id, v_lot.id, -v_take, 'redeem',
            'redemption:' || p_request_id, '', p_actor, v_lot.available_from, v_lot.expires_at, redeemed_id, p_at);
  END LOOP;
  INSERT INTO loyalty_redemptions (id, customer_id, source_customer_id, reward_id, request_id, points, code, status,
                                   channel, actor, created_at)
  VALUES (redeemed_id, p_customer, p_customer, p_reward, p_request_id, cost, p_code, 'issued', p_channel, p_actor,
          p_at);
  INSERT INTO events (event_id, customer_id, source_customer_id, type, channel, occurred_at, received_at, properties)
  VALUES ('oc_' || replace(loyalty_uuid7()::text, '-', ''), p_customer, p_customer, 'loyalty.reward_redeemed',
          'system', p_at, p_at, jsonb_build_object('reward', reward_name, 'points', cost, 'channel', p_channel));
  -- the code notice: the preferred channel if granted, else the first granted of p_channels, else none
  SELECT latest.channel INTO v_notice_channel
  FROM (SELECT DISTINCT ON (cc.channel) cc.channel, cc.status
        FROM consent_changes AS cc
        WHERE cc.customer_id = p_customer AND cc.purpose = p_purpose AND cc.channel = ANY (p_channels)
        ORDER BY cc.channel, cc.changed_at DESC, cc.id DESC) AS latest
  WHERE latest.status = 'granted'
  ORDER BY (latest.channel = v_traits -> 'attributes' ->> 'preferred_channel') IS TRUE DESC,
           array_position(p_channels, latest.channel::text)
  LIMIT 1;
  IF v_notice_channel IS NOT NULL THEN
    INSERT INTO outbox (id, kind, channel, state, attempts, max_attempts, next_attempt_at, created_at, customer_id,
                        payload)
    VALUES (loyalty_uuid7(), 'loyalty', v_notice_channel, 'pending', 0, 8, p_at, p_at, p_customer,
            jsonb_build_object('customer_id', p_customer::text, 'template', 'reward_code', 'data',
                               jsonb_build_object('reward', reward_name, 'points', cost, 'code', p_code,
                                                  'channel', p_channel)));
    noticed := true;
  END IF;
  outcome := 'issued';
END
$$
"""

FUNCTIONS = (UUID7_FUNCTION, REDEEM_FUNCTION)
DROP_FUNCTIONS = (
    "DROP FUNCTION IF EXISTS loyalty_redeem(uuid, uuid, text, text, text, timestamptz, text, text, text[])",
    "DROP FUNCTION IF EXISTS loyalty_uuid7()",
)


def install(metadata: MetaData) -> None:
    """Create the functions with the tables (``metadata.create_all``) on PostgreSQL; drop them after the tables."""
    for sql in FUNCTIONS:
        event.listen(metadata, "after_create", DDL(sql).execute_if(dialect="postgresql"))  # type: ignore[no-untyped-call]
    for sql in DROP_FUNCTIONS:
        event.listen(metadata, "after_drop", DDL(sql).execute_if(dialect="postgresql"))  # type: ignore[no-untyped-call]
