"""Referrals: every customer has a code; both sides earn when the referred customer's first order is paid.

What each side earns is configured as event rules for ``referral.referrer`` and ``referral.referred``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from omnicanal.driver_sql import fetch_typed
from omnicanal.errors import Conflict, ValidationFailed
from omnicanal.loyalty import wallets
from omnicanal.loyalty.models import LoyaltySpend, LoyaltyWallet
from omnicanal.loyalty.queries import among_param, among_value, prebuilt
from omnicanal.loyalty.rewards import new_code

if TYPE_CHECKING:
    from omnicanal.loyalty.earning import Earned


def referral_code(session: Session, customer_id: uuid.UUID) -> str:
    wallet = wallets.primary_wallet(session, customer_id)
    if wallet.referral_code is None:
        wallet.referral_code = new_code("R", 8)
        session.flush()
    return wallet.referral_code


def attach(session: Session, *, customer_id: uuid.UUID, code: str) -> uuid.UUID:
    """Record who referred ``customer_id``; only before their first paid order, and only once."""
    referrer = session.scalar(select(LoyaltyWallet).where(LoyaltyWallet.referral_code == code.strip().upper()))
    if referrer is None:
        raise ValidationFailed.on_field("properties.code", "is not a referral code")
    if referrer.customer_id == customer_id:
        raise Conflict("a customer cannot refer themselves")
    wallet = wallets.primary_wallet(session, customer_id)
    if wallet.referred_by is not None:
        raise Conflict("this customer was already referred")
    orders = session.scalar(
        select(func.count()).select_from(LoyaltySpend).where(LoyaltySpend.customer_id == customer_id)
    )
    if orders:
        raise Conflict("only a customer who has not ordered yet can be referred")
    wallet.referred_by = referrer.customer_id
    session.flush()
    return referrer.customer_id


def reward_first_orders(session: Session, first: Sequence[tuple[uuid.UUID, str]], *, now: datetime) -> list[Earned]:
    from omnicanal.customers.merging import current_customer_id
    from omnicanal.loyalty.earning import LoyaltyEvent, earn_events

    owners = list({owner for owner, _ in first})
    dialect = session.get_bind().dialect.name
    waiting = prebuilt(dialect, "referrals.waiting", _build_waiting)
    session.flush()
    # asked of every batch of paid orders and almost always empty: its ids on the driver, the wallets only if any
    ids = [wallet_id for (wallet_id,) in fetch_typed(session, waiting, {"owners": among_value(dialect, owners)})]
    referred = list(session.scalars(select(LoyaltyWallet).where(LoyaltyWallet.id.in_(ids)))) if ids else []
    events: list[LoyaltyEvent] = []
    for wallet in referred:
        orders = session.scalar(
            select(func.count(func.distinct(LoyaltySpend.order_id))).where(
                LoyaltySpend.customer_id == wallet.customer_id
            )
        )
        if orders != 1 or wallet.referred_by is None:
            continue
        wallet.referral_rewarded = True
        referrer = current_customer_id(session, wallet.referred_by)
        if referrer is None:
            continue
        events.append(
            LoyaltyEvent(
                f"referral:{wallet.source_customer_id}:referred",
                wallet.customer_id,
                "referral.referred",
                {"referrer_id": str(referrer)},
                "system",
            )
        )
        events.append(
            LoyaltyEvent(
                f"referral:{wallet.source_customer_id}:referrer",
                referrer,
                "referral.referrer",
                {"referred_id": str(wallet.customer_id)},
                "system",
            )
        )
    session.flush()
    return earn_events(session, events, now=now) if events else []


def _build_waiting(dialect: str) -> Any:
    """The wallets among ``owners`` referred by someone and not rewarded yet."""
    return select(LoyaltyWallet.id).where(
        among_param(dialect, LoyaltyWallet.source_customer_id, "owners"),
        LoyaltyWallet.referred_by.is_not(None),
        LoyaltyWallet.referral_rewarded.is_(False),
    )
