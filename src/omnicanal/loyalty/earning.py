"""Earning: paid orders and loyalty events become lots, in batches, each keyed by its source.

Every earning claims a key in ``loyalty_keys`` (``order:<id>:rule:<id>``, ``event:<id>:rule:<id>``, or
``once:<rule>:<customer>:<values>`` for once-only bonuses) in the same transaction as its lot: a source
sent again, even concurrently from another process, earns nothing the second time.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, case, func, literal, select
from sqlalchemy.orm import Session

from omnicanal.customers.models import Customer
from omnicanal.db import utcnow, uuid7
from omnicanal.driver_sql import bulk_insert, fetch_typed
from omnicanal.errors import NotFound, ValidationFailed
from omnicanal.loyalty import keys, ledger, wallets
from omnicanal.loyalty.models import LoyaltyLot, LoyaltyRule, LoyaltySpend, LoyaltyTier, LoyaltyWallet
from omnicanal.loyalty.queries import among, among_param, among_value, prebuilt
from omnicanal.loyalty.rules import (
    CAP_PERIODS,
    ROUNDINGS,
    RuleSpec,
    applies,
    capped,
    matches_event,
    period_start,
    scale_lines,
    spend_points,
)
from omnicanal.settings import Settings

# Lot reasons that count as "earned" (tiers qualify on these, less returns).
EARNING_REASONS = ("order", "bonus", "referral", "purchase_code")


_default_settings: list[Settings] = []


def programme(session: Session) -> Settings:
    """The settings of the running app or worker (read from the environment once otherwise)."""
    from omnicanal.realtime import runtime_for

    runtime = runtime_for(session)
    if runtime is not None and isinstance(runtime.settings, Settings):
        return runtime.settings
    if not _default_settings:
        _default_settings.append(Settings())
    return _default_settings[0]


@dataclass(frozen=True)
class PaidOrder:
    order_id: str
    customer_id: uuid.UUID
    channel: str
    currency: str
    lines: Sequence[Mapping[str, Any]]
    paid_at: datetime

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], lines: Sequence[Mapping[str, Any]] | None = None) -> PaidOrder:
        """The order of an ``order.paid`` payload; ``lines``, the provider's for a payload that carries none."""
        try:
            paid_at = payload.get("paid_at") or utcnow()
            if isinstance(paid_at, str):
                paid_at = datetime.fromisoformat(paid_at)
            return cls(
                order_id=str(payload["order_id"]),
                customer_id=uuid.UUID(str(payload["customer_id"])),
                channel=str(payload.get("channel") or "web"),
                currency=str(payload["currency"]),
                lines=_order_lines(payload, lines),
                paid_at=paid_at,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationFailed.on_field("order", f"is not an order.paid payload ({exc})") from None


# the lines of each payload, in order (one statement for a batch: every paid order asks)
OrderLinesProvider = Callable[[Session, Sequence[Mapping[str, Any]]], list[Sequence[Mapping[str, Any]] | None]]
_order_lines_provider: list[OrderLinesProvider] = []


def set_order_lines_provider(provider: OrderLinesProvider) -> None:
    """Where the lines of ``order.paid`` payloads that carry none come from (the commerce adapter), given the
    payloads of a batch and answering each one's lines, in order; None for a payload it does not know.

    A line: ``{"line_id", "sku", "product_id", "category_ids", "quantity", "amount"}``, ``amount`` in minor
    units after discounts and without shipping. ``line_id`` may be the SKU when an order has one line per SKU.
    """
    _order_lines_provider[:] = [provider]


def paid_orders(session: Session, payloads: Sequence[Mapping[str, Any]]) -> list[PaidOrder]:
    """The orders of ``order.paid`` payloads, the lines of those that carry none read together."""
    missing = [payload for payload in payloads if not isinstance(payload.get("lines"), list)]
    provided: dict[int, Sequence[Mapping[str, Any]] | None] = {}
    if missing and _order_lines_provider:
        provided = dict(zip(map(id, missing), _order_lines_provider[0](session, missing), strict=True))
    return [PaidOrder.from_payload(payload, provided.get(id(payload))) for payload in payloads]


def _order_lines(payload: Mapping[str, Any], provided: Sequence[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    lines = payload.get("lines")
    if not isinstance(lines, list) and provided is not None:
        lines = list(provided)
    if isinstance(lines, list):
        return [{**line, "line_id": str(line.get("line_id") or line.get("sku"))} for line in lines]
    # Without lines: the order as one line worth what was paid, whose "units" are minor units, so that
    # a return refunding part of it takes back the same part of its points (returns.py).
    amount = int(payload.get("paid_amount") or payload.get("total") or 0)
    return [{"line_id": WHOLE_ORDER, "quantity": amount, "amount": amount, "category_ids": []}]


WHOLE_ORDER = "order"


@dataclass(frozen=True)
class LoyaltyEvent:
    id: str
    customer_id: uuid.UUID
    type: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    channel: str = "api"


@dataclass
class Earned:
    customer_id: uuid.UUID
    points: int
    reason: str
    source: str
    lot_ids: list[uuid.UUID] = field(default_factory=list)


def _rules(session: Session, kind: str) -> list[RuleSpec]:
    statement = prebuilt(session.get_bind().dialect.name, "earning.rules", _build_rules)
    session.flush()
    fields = RuleSpec.__dataclass_fields__
    return [RuleSpec(**dict(zip(fields, row, strict=True))) for row in fetch_typed(session, statement, {"kind": kind})]


def _build_rules(_: str) -> Any:
    table = LoyaltyRule.__table__.c
    return select(*(table[name] for name in RuleSpec.__dataclass_fields__)).where(
        table.kind == bindparam("kind"), table.active.is_(True), table.archived_at.is_(None)
    )


def _build_owners(dialect: str, with_traits: bool) -> Any:
    table = Customer.__table__.c
    traits = table.traits if with_traits else literal(None)
    return select(table.id, table.merged_into_id, table.erased_at, traits).where(among_param(dialect, table.id, "ids"))


def _build_tiers(dialect: str) -> Any:
    wallet, tier = LoyaltyWallet.__table__.c, LoyaltyTier.__table__.c
    return (
        select(wallet.customer_id, tier.name, tier.multiplier)
        .join_from(LoyaltyWallet.__table__, LoyaltyTier.__table__, tier.id == wallet.tier_id)
        .where(among_param(dialect, wallet.customer_id, "ids"))
        .order_by(tier.threshold)
    )


class _Context:
    """What a batch needs about its customers, read once: owners now, traits, tiers, what capped rules earned."""

    def __init__(self, session: Session, customer_ids: Sequence[uuid.UUID], rules: Sequence[RuleSpec], now: datetime):
        self.now = now
        ids = list(dict.fromkeys(customer_ids))
        self.owner: dict[uuid.UUID, uuid.UUID] = {}
        self.traits: dict[uuid.UUID, Mapping[str, Any]] = {}
        moved: list[uuid.UUID] = []
        # traits are read (and parsed) only when a rule targets a segment
        dialect = session.get_bind().dialect.name
        with_traits = any(r.segments for r in rules)
        owners_of = prebuilt(dialect, f"earning.owners.{with_traits}", lambda d: _build_owners(d, with_traits))
        session.flush()
        for cid, merged_into, erased_at, traits in fetch_typed(session, owners_of, {"ids": among_value(dialect, ids)}):
            if erased_at is not None:
                continue
            if merged_into is None:
                self.owner[cid] = cid
                self.traits[cid] = traits or {}
            else:
                moved.append(cid)
        if moved:
            from omnicanal.customers.service import get_customer

            for cid in moved:
                survivor = get_customer(session, cid, follow_merges=True)
                self.owner[cid] = survivor.id
                self.traits[survivor.id] = survivor.traits or {}
        owners = list(set(self.owner.values()))
        wallets.ensure_wallets(session, owners, now=now)
        self.tier: dict[uuid.UUID, tuple[str, float]] = {}
        tiers_of = prebuilt(dialect, "earning.tiers", _build_tiers)
        for cid, name, multiplier in fetch_typed(session, tiers_of, {"ids": among_value(dialect, owners)}):
            self.tier[cid] = (name, multiplier)  # the highest tier among a survivor's wallets wins
        self.earned: dict[tuple[uuid.UUID, Any], dict[str, int]] = defaultdict(dict)
        capped_ids = [r.id for r in rules if r.caps]
        if capped_ids and owners:
            starts = {p: period_start(p, now) for p in CAP_PERIODS}
            columns = [
                func.coalesce(func.sum(case((LoyaltyLot.earned_at >= starts[p], LoyaltyLot.earned), else_=0)), 0)
                for p in ("day", "week", "month")
            ]
            for cid, rule_id, day, week, month, lifetime in session.execute(
                select(LoyaltyLot.customer_id, LoyaltyLot.rule_id, *columns, func.sum(LoyaltyLot.earned))
                .where(among(session, LoyaltyLot.customer_id, owners), LoyaltyLot.rule_id.in_(capped_ids))
                .group_by(LoyaltyLot.customer_id, LoyaltyLot.rule_id)
            ):
                self.earned[(cid, rule_id)] = {
                    "day": int(day),
                    "week": int(week),
                    "month": int(month),
                    "lifetime": int(lifetime),
                }

    def tier_name(self, customer_id: uuid.UUID) -> str | None:
        found = self.tier.get(customer_id)
        return found[0] if found else None

    def tier_multiplier(self, customer_id: uuid.UUID) -> float:
        found = self.tier.get(customer_id)
        return found[1] if found else 1.0

    def allow(self, customer_id: uuid.UUID, rule: RuleSpec, points: int) -> int:
        if not rule.caps:
            return points
        so_far = self.earned[(customer_id, rule.id)]
        allowed = capped(points, rule, so_far)
        for period in CAP_PERIODS:
            so_far[period] = so_far.get(period, 0) + allowed
        return allowed


def _expiry(rule: RuleSpec | None, settings: Settings, start: datetime) -> datetime | None:
    days = rule.expiry_days if rule is not None and rule.expiry_days else settings.loyalty_expiry_days
    return start + timedelta(days=days) if days else None


def earn_paid_orders(
    session: Session, payloads: Sequence[Mapping[str, Any]], *, now: datetime | None = None
) -> list[Earned]:
    """Points for paid orders (pending until the return window ends); one query set per batch."""
    now = now or utcnow()
    settings = programme(session)
    orders = paid_orders(session, payloads)
    rules = _rules(session, "spend")
    context = _Context(session, [o.customer_id for o in orders], rules, now)
    # One key per order: an order earns once, under the rules in force when it was first paid.
    claimed = keys.claim_many(session, [f"order:{o.order_id}" for o in orders], now=now)
    new_lots: list[ledger.NewLot] = []
    spends: list[dict[str, Any]] = []
    first_orders: list[tuple[uuid.UUID, str]] = []
    results: list[Earned] = []
    for order in orders:
        owner = context.owner.get(order.customer_id)
        if owner is None:
            continue
        if f"order:{order.order_id}" not in claimed:
            continue
        amount = sum(int(line["amount"]) for line in order.lines)
        spends.append({"id": uuid7(), "customer_id": owner, "source_customer_id": owner, "order_id": order.order_id,
                       "amount": amount, "currency": order.currency, "spent_at": order.paid_at})  # fmt: skip
        first_orders.append((owner, order.order_id))
        available_from = order.paid_at + timedelta(days=settings.loyalty_return_window_days)
        quantities: dict[str, int] = defaultdict(int)
        for line in order.lines:
            quantities[str(line["line_id"])] += int(line.get("quantity") or 1)
        for rule in rules:
            if not applies(
                rule,
                at=order.paid_at,
                channel=order.channel,
                tier=context.tier_name(owner),
                traits=context.traits.get(owner, {}),
            ):
                continue
            per_line = spend_points(
                rule, order.lines, currency=order.currency, extra_multiplier=context.tier_multiplier(owner)
            )
            total = context.allow(owner, rule, sum(per_line.values()))
            if total <= 0:
                continue
            per_line = scale_lines(per_line, total)
            new_lots.append(
                ledger.NewLot(
                    customer_id=owner,
                    points=total,
                    reason="order",
                    source=f"order:{order.order_id}",
                    available_from=available_from,
                    expires_at=_expiry(rule, settings, available_from),
                    rule_id=rule.id,
                    order_id=order.order_id,
                    lines={k: {"points": v, "quantity": quantities.get(k, 1)} for k, v in per_line.items()},
                )
            )
            results.append(Earned(owner, total, "order", f"order:{order.order_id}"))
    if spends:
        bulk_insert(session, LoyaltySpend, spends)
    lot_ids = ledger.add_lots(session, new_lots, now=now)
    for earned, lot_id in zip(results, lot_ids, strict=True):
        earned.lot_ids.append(lot_id)
    if first_orders:
        from omnicanal.loyalty.referrals import reward_first_orders

        results += reward_first_orders(session, first_orders, now=now)
    _after_earning(session, results, now=now)
    return results


def earn_events(session: Session, events: Sequence[LoyaltyEvent], *, now: datetime | None = None) -> list[Earned]:
    """Bonus points for loyalty events (consent, survey, social, visit, birthday, referral, custom)."""
    now = now or utcnow()
    settings = programme(session)
    rules = _rules(session, "event")
    if not events:
        return []
    context = _Context(session, [e.customer_id for e in events], rules, now)
    results: list[Earned] = []
    new_lots: list[ledger.NewLot] = []
    for event in events:
        owner = context.owner.get(event.customer_id)
        if owner is None:
            raise NotFound(f"customer {event.customer_id} not found")
        for rule in rules:
            if not matches_event(rule, event.type, event.properties):
                continue
            if not applies(
                rule, at=now, channel=event.channel, tier=context.tier_name(owner), traits=context.traits.get(owner, {})
            ):
                continue
            if rule.once_per is not None:
                values = ":".join(str(event.properties.get(name, "")) for name in rule.once_per)
                key = f"once:{rule.id}:{owner}:{values}"
            else:
                key = f"event:{event.id}:rule:{rule.id}"
            multiplier = Decimal(str(rule.multiplier)) * Decimal(str(context.tier_multiplier(owner)))
            points = int((Decimal(rule.points) * multiplier).quantize(Decimal(1), rounding=ROUNDINGS[rule.rounding]))
            if points <= 0 or not keys.claim(session, key, now=now):
                continue
            points = context.allow(owner, rule, points)
            if points <= 0:
                continue
            reason = "referral" if event.type.startswith("referral.") else "bonus"
            new_lots.append(
                ledger.NewLot(
                    customer_id=owner,
                    points=points,
                    reason=reason,
                    source=f"event:{event.id}",
                    available_from=now,
                    expires_at=_expiry(rule, settings, now),
                    rule_id=rule.id,
                    note=rule.name,
                )
            )
            results.append(Earned(owner, points, reason, f"event:{event.id}"))
    for earned, lot_id in zip(results, ledger.add_lots(session, new_lots, now=now), strict=True):
        earned.lot_ids.append(lot_id)
    _after_earning(session, results, now=now)
    return results


def earn_direct(
    session: Session,
    *,
    customer_id: uuid.UUID,
    points: int,
    reason: str,
    source: str,
    key: str,
    note: str = "",
    actor: str = "system",
    now: datetime | None = None,
) -> Earned | None:
    """Points not computed by a rule (a purchase code, a manual adjustment), once per ``key``."""
    now = now or utcnow()
    if not keys.claim(session, key, now=now):
        return None
    wallets.ensure_wallets(session, [customer_id], now=now)
    lot = ledger.NewLot(
        customer_id=customer_id,
        points=points,
        reason=reason,
        source=source,
        available_from=now,
        expires_at=_expiry(None, programme(session), now),
        note=note,
        actor=actor,
    )
    earned = Earned(customer_id, points, reason, source, ledger.add_lots(session, [lot], now=now))
    _after_earning(session, [earned], now=now)
    return earned


def _after_earning(session: Session, results: Sequence[Earned], *, now: datetime) -> None:
    if not results:
        return
    from omnicanal.loyalty.notifications import announce_earned
    from omnicanal.loyalty.tiers import upgrade

    announce_earned(session, results, now=now)
    upgrade(session, list({r.customer_id for r in results}), now=now)
