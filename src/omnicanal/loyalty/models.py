"""Loyalty tables.

Points live in lots; every change to a lot is one immutable entry. An entry always touches exactly one
lot and carries that lot's ``source_customer_id``, so a merge (and its undo) moves each lot together with
every entry that ever changed it, and each customer's balance stays the sum of its own ledger.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from omnicanal.db import Base, JSONType, UTCDateTime, utcnow, uuid7
from omnicanal.loyalty import redeem_function
from omnicanal.owned_rows import moved_rows_index


class LoyaltyWallet(Base):
    """One per customer ever written to; a survivor of merges owns several (one per source)."""

    __tablename__ = "loyalty_wallets"
    __table_args__ = (
        UniqueConstraint("source_customer_id", name="uq_loyalty_wallets_source_customer_id"),
        Index("ix_loyalty_wallets_customer_id", "customer_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    tier_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("loyalty_tiers.id"), nullable=True)
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    referral_code: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    referred_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    referral_rewarded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyLot(Base):
    __tablename__ = "loyalty_lots"
    __table_args__ = (
        Index("ix_loyalty_lots_spend", "customer_id", "expires_at"),
        Index("ix_loyalty_lots_source_customer_id", "source_customer_id"),
        Index("ix_loyalty_lots_expiry", "expires_at", "remaining"),
        Index("ix_loyalty_lots_order_id", "order_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    earned: Mapped[int] = mapped_column(Integer)
    # negative on a debt lot (points reversed after they were spent)
    remaining: Mapped[int] = mapped_column(Integer)
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    available_from: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    source: Mapped[str] = mapped_column(String(250))
    reason: Mapped[str] = mapped_column(String(100))
    rule_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # points per order line, so a returned line reverses exactly what it earned
    lines: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # points taken back from each line by returns, so a line returned twice never reverses twice
    reversed_lines: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class LoyaltyEntry(Base):
    """Immutable. ``points`` is signed; the sum of a lot's entries is its ``remaining``."""

    __tablename__ = "loyalty_entries"
    __table_args__ = (
        Index("ix_loyalty_entries_customer", "customer_id", "created_at", "id"),
        Index("ix_loyalty_entries_source_customer_id", "source_customer_id"),
        Index("ix_loyalty_entries_lot_id", "lot_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    lot_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("loyalty_lots.id"))
    points: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(100))
    # the event, order, return, redemption or request that caused the change
    source: Mapped[str] = mapped_column(String(250))
    note: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="system")
    available_from: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    redemption_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyKey(Base):
    """Every earning, reversal and redemption claims its key here first: the same source counts once."""

    __tablename__ = "loyalty_keys"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyRule(Base):
    __tablename__ = "loyalty_rules"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    points: Mapped[int] = mapped_column(Integer)
    per_amount: Mapped[int | None] = mapped_column(Integer, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    rounding: Mapped[str] = mapped_column(String(16), default="down")
    multiplier: Mapped[float] = mapped_column(Float, default=1.0)
    product_multipliers: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    category_multipliers: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    caps: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    channels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    tiers: Mapped[list[str]] = mapped_column(JSONType, default=list)
    segments: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    once_per: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    expiry_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # set when deleted while the ledger refers to it: kept for the history, out of every list and engine
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyTier(Base):
    __tablename__ = "loyalty_tiers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    threshold: Mapped[int] = mapped_column(Integer)
    basis: Mapped[str] = mapped_column(String(16), default="points")
    window_days: Mapped[int] = mapped_column(Integer, default=365)
    retention_threshold: Mapped[int | None] = mapped_column(Integer, nullable=True)
    multiplier: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyReward(Base):
    __tablename__ = "loyalty_rewards"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    cost_points: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int | None] = mapped_column(Integer, nullable=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    supplier_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    tiers: Mapped[list[str]] = mapped_column(JSONType, default=list)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # set when deleted while the ledger refers to it: kept for the history, out of every list and engine
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyRedemption(Base):
    __tablename__ = "loyalty_redemptions"
    __table_args__ = (Index("ix_loyalty_redemptions_source_customer_id", "source_customer_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"), index=True)
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    reward_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("loyalty_rewards.id"))
    request_id: Mapped[str] = mapped_column(String(200), unique=True)
    points: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="issued")
    channel: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyCoupon(Base):
    """Voucher codes issued by the built-in issuer (used until a promotions engine registers its own)."""

    __tablename__ = "loyalty_coupons"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    redemption_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyPurchaseCode(Base):
    """Codes printed on products; only their hash is stored."""

    __tablename__ = "loyalty_purchase_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    batch: Mapped[str] = mapped_column(String(100), index=True)
    points: Mapped[int] = mapped_column(Integer)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    used_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltyCodeFailure(Base):
    """Wrong purchase codes, counted for the rate limit and the lockout."""

    __tablename__ = "loyalty_code_failures"
    __table_args__ = (
        Index("ix_loyalty_code_failures_customer", "customer_id", "attempted_at"),
        Index("ix_loyalty_code_failures_source_customer_id", "source_customer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoyaltySpend(Base):
    """What each paid order (less returns) spent, for tiers that qualify on spend."""

    __tablename__ = "loyalty_spend"
    __table_args__ = (
        Index("ix_loyalty_spend_customer", "customer_id", "spent_at"),
        moved_rows_index("loyalty_spend"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    source_customer_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("customers.id"))
    order_id: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    spent_at: Mapped[datetime] = mapped_column(UTCDateTime)


redeem_function.install(Base.metadata)  # the PostgreSQL function of the common redemption, with the tables
