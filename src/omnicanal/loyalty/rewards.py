"""Rewards catalogue and redemptions.

A redemption takes its points (the wallet lock), then one unit of stock (a conditional update), then issues
its code, all in one transaction: a refusal anywhere leaves points, stock and codes as they were. Each
redemption is keyed by the caller's ``request_id``; asking again returns the first answer.

Vouchers become coupons through the :class:`CouponIssuer` registered with :func:`set_coupon_issuer`; the
built-in one keeps the codes in ``loyalty_coupons`` until a promotions engine registers its own.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from omnicanal.customers.models import Customer
from omnicanal.customers.service import get_customer
from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import bulk_insert, connection_of
from omnicanal.errors import Conflict, NotFound, ValidationFailed
from omnicanal.loyalty import keys, ledger, queries, wallets
from omnicanal.loyalty.models import LoyaltyCoupon, LoyaltyRedemption, LoyaltyReward, LoyaltyWallet
from omnicanal.loyalty.tiers import current_tiers

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are read aloud at the counter


def new_code(prefix: str, length: int = 10) -> str:
    # one read of the system's random source for the whole code; 32 letters divide 256, so every letter
    # is as likely as with secrets.choice
    return prefix + "".join(_ALPHABET[byte % 32] for byte in secrets.token_bytes(length))


class OutOfStock(Conflict):
    slug = "out-of-stock"
    title = "Out of stock"


class Archived(Conflict):
    slug = "archived"
    title = "Deleted, kept for the ledger"


class NotAvailable(Conflict):
    slug = "reward-not-available"
    title = "Reward not available"


@dataclass(frozen=True)
class Voucher:
    redemption_id: uuid.UUID
    customer_id: uuid.UUID
    reward_name: str
    value: dict[str, Any]  # {"amount": minor units, "currency": "EUR"} or {"percent": 10}


class CouponIssuer(Protocol):
    def issue(self, session: Session, voucher: Voucher) -> str:
        """Create a single-use coupon worth ``voucher.value`` and return its code (same transaction)."""

    def void(self, session: Session, code: str) -> bool:
        """Cancel an unused coupon; False when it was used already."""


class BuiltinCoupons:
    def issue(self, session: Session, voucher: Voucher) -> str:
        code = new_code("LV-")
        session.add(LoyaltyCoupon(code=code, redemption_id=voucher.redemption_id, value=voucher.value))
        return code

    def void(self, session: Session, code: str) -> bool:
        coupon = session.get(LoyaltyCoupon, code)
        if coupon is None or coupon.used_at is not None:
            return False
        session.delete(coupon)
        return True


_issuer: CouponIssuer = BuiltinCoupons()


def set_coupon_issuer(issuer: CouponIssuer) -> None:
    global _issuer
    _issuer = issuer


def coupon_issuer() -> CouponIssuer:
    return _issuer


def validate_reward(data: dict[str, Any]) -> None:
    kind = data["kind"]
    value = data.get("value") or {}
    if kind == "voucher":
        amount, percent = value.get("amount"), value.get("percent")
        if (amount is None) == (percent is None):
            raise ValidationFailed.on_field("value", "a voucher has either an amount (with currency) or a percent")
        if amount is not None and (not isinstance(amount, int) or amount <= 0 or not value.get("currency")):
            raise ValidationFailed.on_field("value.amount", "a positive amount in minor units, with a currency")
        if percent is not None and not (isinstance(percent, int | float) and 0 < percent <= 100):
            raise ValidationFailed.on_field("value.percent", "between 0 and 100")
    elif kind == "external" and not data.get("supplier_ref"):
        raise ValidationFailed.on_field("supplier_ref", "an external reward needs the supplier's reference")
    starts, ends = data.get("starts_at"), data.get("ends_at")
    if starts is not None and ends is not None and ends <= starts:
        raise ValidationFailed.on_field("ends_at", "must be after starts_at")


def create_reward(session: Session, data: dict[str, Any]) -> LoyaltyReward:
    validate_reward(data)
    reward = LoyaltyReward(**data)
    session.add(reward)
    session.flush()
    return reward


def list_rewards(session: Session) -> list[LoyaltyReward]:
    return list(
        session.scalars(
            select(LoyaltyReward)
            .where(LoyaltyReward.archived_at.is_(None))
            .order_by(LoyaltyReward.cost_points, LoyaltyReward.name)
        )
    )


def get_reward(session: Session, reward_id: uuid.UUID) -> LoyaltyReward:
    reward = session.get(LoyaltyReward, reward_id)
    if reward is None:
        raise NotFound(f"reward {reward_id} not found")
    return reward


def update_reward(session: Session, reward_id: uuid.UUID, data: dict[str, Any]) -> LoyaltyReward:
    """Replace a reward's settings; codes already issued keep what they were issued for."""
    reward = get_reward(session, reward_id)
    if reward.archived_at is not None:
        raise Archived(f"the reward {reward.name!r} was deleted; create a new one")
    validate_reward(data)
    for name, value in data.items():
        setattr(reward, name, value)
    session.flush()
    return reward


def delete_reward(session: Session, reward_id: uuid.UUID, *, now: datetime | None = None) -> bool:
    """Delete a reward; one already redeemed is archived (kept for its redemptions, no longer offered).
    Returns True when it was archived."""
    reward = get_reward(session, reward_id)
    if reward.archived_at is not None:
        return True
    redeemed = select(LoyaltyRedemption.id).where(LoyaltyRedemption.reward_id == reward.id).limit(1)
    if session.scalar(redeemed) is None:
        session.delete(reward)
        session.flush()
        return False
    reward.active = False
    reward.archived_at = now or utcnow()
    session.flush()
    return True


_REWARD_COLUMNS = (
    LoyaltyReward.id,
    LoyaltyReward.name,
    LoyaltyReward.kind,
    LoyaltyReward.cost_points,
    LoyaltyReward.value,
    LoyaltyReward.stock,
    LoyaltyReward.active,
    LoyaltyReward.starts_at,
    LoyaltyReward.ends_at,
    LoyaltyReward.tiers,
)
_REWARD = select(*_REWARD_COLUMNS).where(LoyaltyReward.id == bindparam("reward_id"))
# The wallet rows of a live (not merged, not erased) customer, with the reward beside them (NULLs when it
# does not exist): one round trip checks the customer, takes the wallet lock spending relies on, and reads
# the reward. Only the wallet rows are locked; stock is taken by a conditional update.
_WALLETS_AND_REWARD = (
    select(LoyaltyWallet.id.label("wallet_id"), *_REWARD_COLUMNS)
    .join(Customer, Customer.id == LoyaltyWallet.customer_id)
    .outerjoin(LoyaltyReward, LoyaltyReward.id == bindparam("reward_id"))
    .where(
        LoyaltyWallet.customer_id == bindparam("customer_id"),
        Customer.erased_at.is_(None),
        Customer.merged_into_id.is_(None),
    )
    .order_by(LoyaltyWallet.id)
)
_LOCK_WALLETS_AND_REWARD = _WALLETS_AND_REWARD.with_for_update(of=LoyaltyWallet)
_TAKE_STOCK = (
    update(LoyaltyReward)
    .where(LoyaltyReward.id == bindparam("reward_id"), LoyaltyReward.stock > 0)
    .values(stock=LoyaltyReward.stock - 1)
)


def is_open(active: bool, starts_at: datetime | None, ends_at: datetime | None, now: datetime) -> bool:
    """Whether a reward can be redeemed at ``now`` (active, within its dates)."""
    return active and (starts_at is None or now >= starts_at) and (ends_at is None or now < ends_at)


def redeem(
    session: Session,
    *,
    customer_id: uuid.UUID,
    reward_id: uuid.UUID,
    request_id: str,
    channel: str,
    actor: str,
    now: datetime | None = None,
) -> tuple[LoyaltyRedemption, bool]:
    """Returns the redemption and whether it is new (False: the answer to an earlier identical request).

    An unknown, erased or merged-away customer is refused (404, or 301 to the survivor) before anything else.
    """
    now = now or utcnow()
    connection = connection_of(session)
    # The wallet lock comes first and doubles as the check that the customer is live.
    stmt = _LOCK_WALLETS_AND_REWARD if queries.is_postgres(session) else _WALLETS_AND_REWARD
    reward: Any = connection.execute(stmt, {"customer_id": customer_id, "reward_id": reward_id}).first()
    if reward is None:
        get_customer(session, customer_id)  # raises NotFound / Moved
        wallets.lock_wallets(session, customer_id)  # a live customer without a wallet yet
        reward = connection.execute(_REWARD, {"reward_id": reward_id}).first()
    if not keys.claim(session, f"redeem:{request_id}", now=now):
        earlier = session.scalar(select(LoyaltyRedemption).where(LoyaltyRedemption.request_id == request_id))
        if earlier is None or earlier.reward_id != reward_id or earlier.source_customer_id != customer_id:
            raise Conflict("this request_id was already used for a different redemption")
        return earlier, False
    if reward is None or reward.id is None:
        raise NotFound(f"reward {reward_id} not found")
    if not is_open(reward.active, reward.starts_at, reward.ends_at, now):
        raise NotAvailable(f"the reward {reward.name!r} is not available now")
    if reward.tiers:
        tier = current_tiers(session, [customer_id]).get(customer_id)
        if tier is None or tier.name not in reward.tiers:
            raise NotAvailable(f"the reward {reward.name!r} is for the tiers {', '.join(reward.tiers)}")
    redemption_id = uuid7()
    ledger.spend_locked(
        session,
        customer_id=customer_id,
        points=reward.cost_points,
        reason="redeem",
        source=f"redemption:{request_id}",
        now=now,
        actor=actor,
        redemption_id=redemption_id,
    )
    if reward.stock is not None:
        taken = connection.execute(_TAKE_STOCK, {"reward_id": reward.id}).rowcount
        if taken != 1:
            raise OutOfStock(f"the reward {reward.name!r} is out of stock")
    if reward.kind == "voucher":
        code = _issuer.issue(session, Voucher(redemption_id, customer_id, reward.name, dict(reward.value)))
    else:
        code = new_code("LR-")
    row = {
        "id": redemption_id,
        "customer_id": customer_id,
        "source_customer_id": customer_id,
        "reward_id": reward.id,
        "request_id": request_id,
        "points": reward.cost_points,
        "code": code,
        "status": "issued",
        "channel": channel,
        "actor": actor,
        "created_at": now,
    }
    redemption = LoyaltyRedemption(**row)
    if reward.kind == "voucher":
        # the issuer's rows may refer to the redemption: the unit of work writes them in order
        session.add(redemption)
        session.flush()
    else:
        bulk_insert(session, LoyaltyRedemption, [row])  # the object is only the answer; it is not added
    from omnicanal.loyalty.notifications import notify, timeline

    details = {"reward": reward.name, "points": reward.cost_points, "code": code, "channel": channel}
    timeline(session, customer_id, "loyalty.reward_redeemed", {k: v for k, v in details.items() if k != "code"})
    notify(session, customer_id, "reward_code", details)
    return redemption, True


def claw_back(session: Session, *, customer_id: uuid.UUID, points: int, source: str, now: datetime) -> int:
    """Cancel the customer's unused rewards (newest first) until ``points`` are back; returns points refunded."""
    refunded = 0
    for redemption in session.scalars(
        select(LoyaltyRedemption)
        .where(LoyaltyRedemption.customer_id == customer_id, LoyaltyRedemption.status == "issued")
        .order_by(LoyaltyRedemption.created_at.desc())
    ).all():
        if refunded >= points:
            break
        reward = session.get(LoyaltyReward, redemption.reward_id)
        if reward is not None and reward.kind == "voucher" and not _issuer.void(session, redemption.code):
            continue
        if reward is not None and reward.kind != "voucher":
            continue  # goods handed over cannot be taken back by the ledger
        refunded += ledger.refund(session, redemption_id=redemption.id, reason="clawback", source=source, now=now)
        redemption.status = "clawed_back"
    session.flush()
    return refunded
